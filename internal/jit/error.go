package jit

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Error codes. The HTTP layer maps each to one status; clients map them back.
const (
	EInvalid      = "invalid"      // 400: the input is wrong
	EUnauthorized = "unauthorized" // 401: no or bad credentials
	EForbidden    = "forbidden"    // 403: authenticated, but not allowed
	ENotFound     = "not_found"    // 404
	EConflict     = "conflict"     // 409: would break a uniqueness or state rule
	ETooLarge     = "too_large"    // 413
	ERateLimited  = "rate_limited" // 429
	EInternal     = "internal"     // 500: a bug or an outage; details stay in the log
	EUnavailable  = "unavailable"  // 503
)

// Error is ajar's one error type. Message is safe to show to a user; Target
// names the field or object at fault when there is one.
type Error struct {
	Code    string
	Message string
	Target  string
	// RetryAfter, when set (rate_limited, unavailable), is how long the
	// caller should wait before trying again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Target)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EInvalid error naming the field at fault.
func Invalid(target, format string, args ...any) *Error {
	return &Error{Code: EInvalid, Message: fmt.Sprintf(format, args...), Target: target}
}

// ErrorCode returns the code of err's *Error, EInternal for any other
// error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EInternal
	}
}

// ErrorMessage returns the user-facing message of err: the message of its
// *Error, or a generic one for anything else so internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}

// ErrorTarget returns the target of err's *Error, if any.
func ErrorTarget(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Target
	}
	return ""
}

// RateLimited returns an ERateLimited error that asks to wait for retry.
func RateLimited(retry time.Duration, format string, args ...any) *Error {
	return &Error{Code: ERateLimited, Message: fmt.Sprintf(format, args...), RetryAfter: retry}
}

// ErrorRetryAfter returns how long err asks the caller to wait, 0 for no
// advice.
func ErrorRetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// RetryAfterSeconds is the Retry-After header value for d: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}
