// Package server is ajard's HTTP face: the REST API under /api/v1, the
// agents' endpoints and the health check, over the control plane. Every
// route is listed in routes.go.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
)

// Server serves the API over one control plane.
type Server struct {
	ctl     *control.Control
	log     *slog.Logger
	proxies []netip.Prefix
	mux     *http.ServeMux
	metrics *metrics
	// LongPoll bounds how long a desired-state watch of the previous
	// agents (GET /api/v1/agent/desired-state) waits.
	LongPoll time.Duration
	// AgentWatch is the shortest wait of an agent's watch (POST
	// /api/v1/agent/watch); each waits a random time between it and 1.5
	// times it. An agent's client must wait longer than that.
	AgentWatch time.Duration
	// BodyTimeout bounds how long reading a request's body may take, from
	// the end of its header (0: no bound). Requests without a body, such
	// as the agents' long polls, are not bounded by it.
	BodyTimeout time.Duration
	bodies      *semaphore.Weighted
	sso         *sso.Provider // UseSSO

	cloudMu sync.Mutex
	clouds  map[string]CloudSyncer // by backend: HandleCloudSync

	returns *Returner      // where parked agents' connections go back (Run); nil: no parking
	parked  sync.WaitGroup // parked agents' polls (park.go)
}

// New returns the API handler. trustedProxies lists the proxies whose
// X-Forwarded-For is believed.
func New(ctl *control.Control, log *slog.Logger, trustedProxies []netip.Prefix) *Server {
	s := &Server{ctl: ctl, log: log, proxies: trustedProxies, mux: http.NewServeMux(), metrics: newMetrics(), LongPoll: 30 * time.Second, AgentWatch: DefaultAgentWatch, BodyTimeout: DefaultBodyTimeout, bodies: semaphore.NewWeighted(DefaultBodyBudget), clouds: map[string]CloudSyncer{}}
	s.routes()
	return s
}

// DefaultAgentWatch is the default AgentWatch: agents' watches wait 80 to
// 120 s, under the agent's 150 s request timeout. A pending watch is the
// agent's presence, so a longer wait costs nothing but fewer requests.
const DefaultAgentWatch = 80 * time.Second

// HSTS is the Strict-Transport-Security header sent on every answer over
// TLS (directly, or through a trusted proxy that says so).
const HSTS = "max-age=31536000"

// DefaultBodyTimeout is the default BodyTimeout: a body of httpio.MaxBody bytes
// must come at 35 KB/s at least.
const DefaultBodyTimeout = 30 * time.Second

// DefaultBodyBudget is the default of LimitBodies: the request body bytes
// ajard reads and holds at once, over all requests.
const DefaultBodyBudget = 32 << 20

// LimitBodies sets how many bytes of request bodies may be read and held
// at once, over all requests (see httpio.ReserveBody). Call it before serving.
func (s *Server) LimitBodies(n int64) { s.bodies = semaphore.NewWeighted(n) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = s.forwarded(r)
	if r.Body != nil && r.Body != http.NoBody {
		var release func()
		r, release = httpio.WithBodyBudget(r, s.bodies, max(s.BodyTimeout, time.Second))
		defer release()
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
	if httpio.Scheme(r) == "https" {
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
	r = r.WithContext(r.Context()) // a copy: Host changes below
	switch strings.ToLower(proto) {
	case "https", "http":
		r = httpio.WithScheme(r, strings.ToLower(proto))
	}
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
			err = httpio.CheckText(r)
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

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := jit.ErrorCode(err)
	if code == jit.EInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == jit.EUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ajar"`)
	}
	if d := httpio.RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", jit.RetryAfterSeconds(d))
	}
	httpio.WriteJSON(w, httpio.StatusOf(err), httpio.ErrorBody{Error: httpio.ErrorDetail{Code: code, Message: jit.ErrorMessage(err), Target: jit.ErrorTarget(err)}})
}

// decode reads one JSON value of at most httpio.MaxBody bytes into v, refusing
// unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := httpio.ReadBody(w, r, httpio.MaxBody)
	if err != nil {
		return err
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

// Run serves srv on ln until ctx ends, then stops gracefully: it closes
// the listener, calls srv's RegisterOnShutdown functions (ajard's answers
// the agents' long polls at once), and gives requests under way up to
// grace to finish, then cuts those still running. srv's BaseContext should
// outlive ctx, or requests under way are cancelled with it. With TLS
// (certFile and keyFile, or srv.TLSConfig) it serves HTTP/2 and HTTP/1.1.
// When srv's handler is a *Server, its agents' waiting long polls park
// their connections outside srv (park.go).
func Run(ctx context.Context, srv *http.Server, ln net.Listener, certFile, keyFile string, grace time.Duration) error {
	if certFile != "" || srv.TLSConfig != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if srv.TLSConfig != nil {
			cfg = srv.TLSConfig.Clone()
		}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				ln.Close()
				return fmt.Errorf("TLS certificate: %w", err)
			}
			cfg.Certificates = append(cfg.Certificates, cert)
		}
		if !slices.Contains(cfg.NextProtos, "h2") {
			cfg.NextProtos = append(cfg.NextProtos, "h2", "http/1.1")
		}
		srv.TLSConfig = cfg
		ln = tls.NewListener(ln, cfg)
	}
	back := NewReturner(ln)
	api, _ := srv.Handler.(*Server)
	if api != nil {
		api.returns = back
	}
	errc := make(chan error, 1)
	go func() {
		err := srv.Serve(back)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		back.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// Out of time: cut what is still running (its requests see
		// their connection gone).
		err = fmt.Errorf("requests still running after %s were cut: %w", grace, srv.Close())
	}
	back.Close()
	if api != nil {
		api.parked.Wait() // answered at once by the drain, each write bounded
	}
	return errors.Join(err, <-errc)
}
