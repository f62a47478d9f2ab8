// Package httpio is what ajard's three HTTP faces — the REST API, the
// Azure-compatible API and the web console — share for reading requests
// and answering them: the error body and the status of each error code,
// JSON out, bounded request bodies under a server-wide budget, the scheme
// the client used, and the activity log's streamed export. Each face keeps
// its own routes and decoding rules; none imports another.
package httpio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/ajarhq/ajar/internal/jit"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

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

// SetRetryAfter sets the Retry-After header of an answer to a request that
// failed with err, when there is advice to give.
func SetRetryAfter(w http.ResponseWriter, err error) {
	if d := RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", jit.RetryAfterSeconds(d))
	}
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// ReadBody reads r's body, at most limit bytes, after reserving room for
// it in the server's budget (ReserveBody). Too large a body is
// jit.ETooLarge; text with NUL characters, which no store keeps, is
// jit.EInvalid.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if err := ReserveBody(r, limit); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &jit.Error{Code: jit.ETooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", limit)}
	}
	if err != nil {
		return nil, jit.Invalid("", "reading the request body: %v", err)
	}
	if jit.EscapesNUL(data) {
		return nil, jit.Invalid("", "text in the request body must not contain NUL characters (\\u0000)")
	}
	return data, nil
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

// WithBodyBudget gives r, which has a body, a share of the server-wide
// budget sem of body bytes read and held at once, waiting at most wait
// for room; release gives the room back when the request ends.
func WithBodyBudget(r *http.Request, sem *semaphore.Weighted, wait time.Duration) (_ *http.Request, release func()) {
	b := &bodyBudget{sem: sem, wait: wait}
	return r.WithContext(context.WithValue(r.Context(), budgetKey{}, b)), b.release
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
		b.held = -1 // given back: not reserved again
	}
}

// ReleaseBody gives back r's room in the budget of body bytes once its
// handler holds no more of the body, before a long wait (an agent's long
// poll) that would otherwise keep it reserved.
func ReleaseBody(r *http.Request) {
	if b, _ := r.Context().Value(budgetKey{}).(*bodyBudget); b != nil {
		b.release()
	}
}

// ReserveBody reserves room for reading up to limit bytes of r's body
// (fewer when its Content-Length says so) in the server's budget of body
// bytes read and held at once (see WithBodyBudget), waiting at most the body
// timeout; the room is given back when the request ends. Handlers call it
// after authenticating the caller and before reading a body, so that
// neither strangers nor many callers at once can make ajard hold more
// than the budget. A server too busy answers jit.EUnavailable.
func ReserveBody(r *http.Request, limit int64) error {
	b, _ := r.Context().Value(budgetKey{}).(*bodyBudget)
	if b == nil || b.held != 0 {
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

// WithScheme records the scheme a trusted proxy says the client used.
func WithScheme(r *http.Request, scheme string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), schemeKey{}, scheme))
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

// Codes returns every error code an answer can carry.
func Codes() []string {
	out := make([]string, 0, len(statusOf))
	for code := range statusOf {
		out = append(out, code)
	}
	return out
}
