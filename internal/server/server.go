// Package server is ajard's HTTP face: the REST API under /api/v1, the
// agents' endpoints and the health check, over the control plane. Every
// route is listed in routes.go.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Server serves the API over one control plane.
type Server struct {
	ctl     *control.Control
	log     *slog.Logger
	proxies []netip.Prefix
	mux     *http.ServeMux
	metrics *metrics
	// LongPoll bounds how long a desired-state watch waits.
	LongPoll time.Duration
	// BodyTimeout bounds how long reading a request's body may take, from
	// the end of its header (0: no bound). Requests without a body, such
	// as the agents' long polls, are not bounded by it.
	BodyTimeout time.Duration
	bodies      *semaphore.Weighted
}

// New returns the API handler. trustedProxies lists the proxies whose
// X-Forwarded-For is believed.
func New(ctl *control.Control, log *slog.Logger, trustedProxies []netip.Prefix) *Server {
	s := &Server{ctl: ctl, log: log, proxies: trustedProxies, mux: http.NewServeMux(), metrics: newMetrics(), LongPoll: 30 * time.Second, BodyTimeout: DefaultBodyTimeout, bodies: semaphore.NewWeighted(DefaultBodyBudget)}
	s.routes()
	return s
}

// HSTS is the Strict-Transport-Security header sent on every answer over
// TLS (directly, or through a trusted proxy that says so).
const HSTS = "max-age=31536000"

// DefaultBodyTimeout is the default BodyTimeout: a body of MaxBody bytes
// must come at 35 KB/s at least.
const DefaultBodyTimeout = 30 * time.Second

// DefaultBodyBudget is the default of LimitBodies: the request body bytes
// ajard reads and holds at once, over all requests.
const DefaultBodyBudget = 32 << 20

// LimitBodies sets how many bytes of request bodies may be read and held
// at once, over all requests (see ReserveBody). Call it before serving.
func (s *Server) LimitBodies(n int64) { s.bodies = semaphore.NewWeighted(n) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = s.forwarded(r)
	if r.Body != nil && r.Body != http.NoBody {
		b := &bodyBudget{sem: s.bodies, wait: max(s.BodyTimeout, time.Second)}
		r = r.WithContext(context.WithValue(r.Context(), budgetKey{}, b))
		defer b.release()
	}
	if s.BodyTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(s.BodyTimeout)) == nil {
			// On a copy: the server looks at its own request's body type
			// to know whether an unread body may be left unread.
			r = r.WithContext(r.Context())
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if Scheme(r) == "https" {
		w.Header().Set("Strict-Transport-Security", HSTS)
	}
	s.metrics.observe(w, r, s.mux)
}

// deadlineBody is a request body read under a deadline, lifted once the
// body has been read to its end: the connection's read deadline must not
// end the request while its handler runs.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

type budgetKey struct{}

// bodyBudget is a request's share of the server's budget of body bytes.
type bodyBudget struct {
	sem  *semaphore.Weighted
	wait time.Duration
	held int64
}

func (b *bodyBudget) release() {
	if b.held > 0 {
		b.sem.Release(b.held)
	}
}

// ReserveBody reserves room for reading up to limit bytes of r's body
// (fewer when its Content-Length says so) in the server's budget of body
// bytes read and held at once (LimitBodies), waiting at most the body
// timeout; the room is given back when the request ends. Handlers call it
// after authenticating the caller and before reading a body, so that
// neither strangers nor many callers at once can make ajard hold more
// than the budget. A server too busy answers jit.EUnavailable.
func ReserveBody(r *http.Request, limit int64) error {
	b, _ := r.Context().Value(budgetKey{}).(*bodyBudget)
	if b == nil || b.held > 0 {
		return nil
	}
	n := limit
	if r.ContentLength >= 0 && r.ContentLength < n {
		n = max(r.ContentLength, 1)
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		return &jit.Error{Code: jit.EUnavailable, Message: "the server is busy reading other requests; try again shortly", RetryAfter: time.Second}
	}
	b.held = n
	return nil
}

type schemeKey struct{}

// forwarded applies what a trusted proxy says about the client's side of
// the connection: X-Forwarded-Proto becomes the request's scheme (see
// Scheme) and X-Forwarded-Host its Host. Of several values the right-most
// counts, the one the nearest proxy (the trusted peer) sent. The headers
// of other peers are ignored.
func (s *Server) forwarded(r *http.Request) *http.Request {
	proto := lastValue(r.Header.Values("X-Forwarded-Proto"))
	host := lastValue(r.Header.Values("X-Forwarded-Host"))
	if proto == "" && host == "" || !s.trusted(peerAddr(r)) {
		return r
	}
	ctx := r.Context()
	switch strings.ToLower(proto) {
	case "https", "http":
		ctx = context.WithValue(ctx, schemeKey{}, strings.ToLower(proto))
	}
	r = r.WithContext(ctx)
	if validHost(host) {
		r.Host = host
	}
	return r
}

// lastValue returns the right-most item of comma-separated header values.
func lastValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// validHost reports whether h is a host name or address with an optional
// port, and nothing else.
func validHost(h string) bool {
	if h == "" || len(h) > 255 || strings.ContainsAny(h, "/\\@?#% \t") {
		return false
	}
	u, err := url.Parse("//" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

// Scheme returns "https" when the client reached ajard over TLS (directly,
// or through a trusted proxy that says so in X-Forwarded-Proto), else
// "http". Secure cookies, HSTS and absolute links follow it.
func Scheme(r *http.Request) string {
	if v, ok := r.Context().Value(schemeKey{}).(string); ok {
		return v
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// handler is an API handler; it writes its response or returns an error.
type handler func(w http.ResponseWriter, r *http.Request, a *control.Actor) error

// api wraps h with authentication, panic recovery and error responses.
func (s *Server) api(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", p)
				s.writeError(w, r, fmt.Errorf("panic: %v", p))
			}
		}()
		a, err := s.authenticate(r)
		if err == nil {
			err = CheckText(r)
		}
		if err == nil {
			err = h(w, r, a)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) authenticate(r *http.Request) (*control.Actor, error) {
	auth := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || secret == "" {
		return nil, jit.Errorf(jit.EUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
	}
	return s.ctl.Authenticate(r.Context(), strings.TrimSpace(secret), s.ClientAddr(r))
}

// ClientAddr returns the address a request came from: the peer, or, when
// the peer is a trusted proxy, the right-most address in X-Forwarded-For
// that is not a trusted proxy. Entries may carry a port
// ("203.0.113.5:4711", "[2001:db8::1]:443"). When that entry is not an
// address ("unknown", an obfuscated name, garbage), the client's address
// is unknown and ClientAddr returns the zero Addr: "my IP" then names no
// address rather than the proxy's.
func (s *Server) ClientAddr(r *http.Request) netip.Addr {
	addr := peerAddr(r)
	if !s.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" && len(hops) == 1 {
			break // no header
		}
		a, ok := parseHop(h)
		if !ok {
			return netip.Addr{}
		}
		if !s.trusted(a) {
			return a
		}
		addr = a
	}
	return addr
}

// peerAddr returns the address of the connection's other end.
func peerAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// parseHop parses one X-Forwarded-For entry: an address, with or without
// a port, IPv6 with or without brackets.
func parseHop(h string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(h)
	if err != nil {
		ap, perr := netip.ParseAddrPort(h)
		if perr != nil {
			if !strings.HasPrefix(h, "[") || !strings.HasSuffix(h, "]") {
				return netip.Addr{}, false
			}
			if a, err = netip.ParseAddr(h[1 : len(h)-1]); err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.WithZone("").Unmap(), true
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var statusOf = map[string]int{
	jit.EInvalid:      http.StatusBadRequest,
	jit.EUnauthorized: http.StatusUnauthorized,
	jit.EForbidden:    http.StatusForbidden,
	jit.ENotFound:     http.StatusNotFound,
	jit.EConflict:     http.StatusConflict,
	jit.ETooLarge:     http.StatusRequestEntityTooLarge,
	jit.ERateLimited:  http.StatusTooManyRequests,
	jit.EInternal:     http.StatusInternalServerError,
	jit.EUnavailable:  http.StatusServiceUnavailable,
}

// StatusOf returns the HTTP status for err.
func StatusOf(err error) int {
	if st, ok := statusOf[jit.ErrorCode(err)]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// UnavailableRetry is the Retry-After of an outage that gives no advice
// of its own.
const UnavailableRetry = 5 * time.Second

// RetryAfter returns how long the client of a request that failed with err
// should wait before trying again: the error's own advice, else
// UnavailableRetry for an outage (jit.EUnavailable); 0 for no advice.
func RetryAfter(err error) time.Duration {
	if d := jit.ErrorRetryAfter(err); d > 0 {
		return d
	}
	if jit.ErrorCode(err) == jit.EUnavailable {
		return UnavailableRetry
	}
	return 0
}

// ErrorBody is the error shape of every API error (Azure's).
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of an error response.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := jit.ErrorCode(err)
	if code == jit.EInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == jit.EUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ajar"`)
	}
	if d := RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", jit.RetryAfterSeconds(d))
	}
	writeJSON(w, StatusOf(err), ErrorBody{ErrorDetail{Code: code, Message: jit.ErrorMessage(err), Target: jit.ErrorTarget(err)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// CheckText refuses a request whose path or query holds what no store
// keeps as text (invalid UTF-8, NUL characters), before it reaches one.
func CheckText(r *http.Request) error {
	if !jit.Storable(r.URL.Path) {
		return jit.Invalid("", "the path must be UTF-8 text without NUL characters")
	}
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			if !jit.Storable(k) || !jit.Storable(v) {
				k = strings.ToValidUTF8(k, "?")
				return jit.Invalid(k, "query parameter %q must be UTF-8 text without NUL characters", k)
			}
		}
	}
	return nil
}

// decode reads one JSON value of at most MaxBody bytes into v, refusing
// unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := ReserveBody(r, MaxBody); err != nil {
		return err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &jit.Error{Code: jit.ETooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", MaxBody)}
	}
	if err != nil {
		return jit.Invalid("", "reading the request body: %v", err)
	}
	if jit.EscapesNUL(data) {
		return jit.Invalid("", "text in the request body must not contain NUL characters (\\u0000)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			return jit.Invalid("", "request body has data after the JSON value")
		}
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return jit.Invalid("", "request body is empty; send a JSON object")
	case errors.As(err, &se):
		return jit.Invalid("", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return jit.Invalid("", "malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		return jit.Invalid(te.Field, "field %s must be %s, not %s", te.Field, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return jit.Invalid(f, "unknown field %q", f)
	}
	return jit.Invalid("", "malformed JSON: %v", err)
}

// query helpers.

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, jit.Invalid(name, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", name, v)
	}
	return t, nil
}

func queryInt(r *http.Request, name string, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, jit.Invalid(name, "%s must be a whole number from %d to %d, got %q", name, lo, hi, v)
	}
	return n, nil
}

// Run serves h on ln until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, srv *http.Server, ln net.Listener, certFile, keyFile string) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if certFile != "" || srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, certFile, keyFile)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	return errors.Join(err, <-errc)
}
