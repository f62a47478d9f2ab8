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
	"strconv"
	"strings"
	"time"

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
}

// New returns the API handler. trustedProxies lists the proxies whose
// X-Forwarded-For is believed.
func New(ctl *control.Control, log *slog.Logger, trustedProxies []netip.Prefix) *Server {
	s := &Server{ctl: ctl, log: log, proxies: trustedProxies, mux: http.NewServeMux(), metrics: newMetrics(), LongPoll: 30 * time.Second}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.metrics.observe(w, r, s.mux)
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
// that is not a trusted proxy.
func (s *Server) ClientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	addr := ap.Addr().Unmap()
	if !s.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
		addr = a
	}
	return addr
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
	if d := jit.ErrorRetryAfter(err); d > 0 {
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
