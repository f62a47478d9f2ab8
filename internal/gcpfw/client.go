package gcpfw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/ajarhq/ajar/internal/jit"
)

// Client reaches the Compute Engine API (REST) with one credential. It is
// safe for concurrent use.
type Client struct {
	instances *compute.InstancesClient
	firewalls *compute.FirewallsClient
	log       *slog.Logger
	now       func() time.Time

	// Retry paces the retries of throttled and not-yet-consistent calls.
	Retry Backoff
	// OpTimeout bounds the wait for one long-running operation.
	OpTimeout time.Duration
	// OpPoll is the first pause between polls of an operation that is not
	// done yet; it doubles up to 2 s.
	OpPoll time.Duration
}

// Backoff says how often and how patiently a call is retried.
type Backoff struct {
	Attempts int           // tries in all, the first included
	Initial  time.Duration // first pause; doubles each time
	Max      time.Duration // longest pause
}

// NewClient returns a Client. Without opts it authenticates with
// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, the
// gcloud user's credentials, the metadata server of a Compute Engine VM or
// GKE workload identity). Tests pass the options of computefake. now is
// the clock of discovery reports (nil: time.Now).
func NewClient(ctx context.Context, logger *slog.Logger, now func() time.Time, opts ...option.ClientOption) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	in, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("google cloud compute client: %w", err)
	}
	fw, err := compute.NewFirewallsRESTClient(ctx, opts...)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("google cloud compute client: %w", err)
	}
	return &Client{
		instances: in, firewalls: fw, log: logger, now: now,
		Retry:     Backoff{Attempts: 6, Initial: 500 * time.Millisecond, Max: 16 * time.Second},
		OpTimeout: 2 * time.Minute,
		OpPoll:    250 * time.Millisecond,
	}, nil
}

// Close releases the SDK clients.
func (c *Client) Close() error {
	return errors.Join(c.instances.Close(), c.firewalls.Close())
}

// apiError returns the Google API error in err, nil when it has none.
func apiError(err error) *googleapi.Error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge
	}
	return nil
}

// reasons returns the reasons of err's error items ("rateLimitExceeded").
func reasons(err error) []string {
	var out []string
	if ge := apiError(err); ge != nil {
		for _, it := range ge.Errors {
			out = append(out, it.Reason)
		}
	}
	var oe *opError
	if errors.As(err, &oe) {
		out = append(out, oe.code)
	}
	return out
}

func hasReason(err error, want ...string) bool {
	for _, r := range reasons(err) {
		for _, w := range want {
			if strings.EqualFold(r, w) {
				return true
			}
		}
	}
	return false
}

func status(err error) int {
	if ge := apiError(err); ge != nil {
		return ge.Code
	}
	var oe *opError
	if errors.As(err, &oe) {
		return oe.status
	}
	return 0
}

// retryable reports whether err passes by itself: throttling (429, or 403
// with a rate-limit reason), a resource still being changed
// (resourceNotReady: eventual consistency), or a server error.
func retryable(err error) bool {
	switch s := status(err); {
	case s == http.StatusTooManyRequests, s >= 500:
		return true
	}
	return hasReason(err, "rateLimitExceeded", "userRateLimitExceeded", "resourceNotReady", "RESOURCE_NOT_READY", "backendError")
}

// retry runs call until it succeeds, fails for good, or c.Retry runs out.
func (c *Client) retry(ctx context.Context, what string, call func() error) error {
	pause := c.Retry.Initial
	for attempt := 1; ; attempt++ {
		err := call()
		var now *retryNow
		if errors.As(err, &now) && attempt < max(c.Retry.Attempts, 1) {
			continue
		}
		if err == nil || !retryable(err) || attempt >= max(c.Retry.Attempts, 1) {
			return err
		}
		c.log.Warn("google cloud: retrying", "call", what, "attempt", attempt, "wait", pause, "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(pause):
		}
		pause = min(pause*2, c.Retry.Max)
	}
}

// wait waits, at most c.OpTimeout, for op to finish and returns its error.
func (c *Client) wait(ctx context.Context, op *compute.Operation, what string) error {
	if op == nil {
		return nil
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.OpTimeout)
	defer cancel()
	pause := c.OpPoll
	for first := true; !op.Done(); first = false {
		if !first {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: operation %s not done after %s: %w", what, op.Name(), c.OpTimeout, ctx.Err())
			case <-time.After(pause):
			}
			pause = min(pause*2, 2*time.Second)
		}
		err := c.retry(ctx, what+": poll operation", func() error {
			err := op.Poll(ctx)
			if oe := failed(op); oe != nil {
				return oe
			}
			return err
		})
		if err != nil && ctx.Err() != nil && parent.Err() == nil { // the poll outlived OpTimeout
			return fmt.Errorf("%s: operation %s not done after %s: %w", what, op.Name(), c.OpTimeout, err)
		}
		if err != nil {
			return err
		}
	}
	if oe := failed(op); oe != nil {
		return oe
	}
	return nil
}

// failed returns the error of op when it finished with one. (Poll turns
// such an operation into an error that keeps only its message.)
func failed(op *compute.Operation) *opError {
	p := op.Proto()
	if e := p.GetError(); p.GetStatus() == computepb.Operation_DONE && e != nil && len(e.Errors) > 0 {
		return &opError{status: int(p.GetHttpErrorStatusCode()), code: e.Errors[0].GetCode(), message: e.Errors[0].GetMessage()}
	}
	return nil
}

// opError is the error of a finished operation: its HTTP status and the
// first error's code ("QUOTA_EXCEEDED") and message.
type opError struct {
	status        int
	code, message string
}

func (e *opError) Error() string {
	return fmt.Sprintf("operation failed (%d): %s: %s", e.status, e.code, e.message)
}

// quotaExceeded reports whether err says a quota (of firewall rules) ran
// out: 403 quotaExceeded, or an operation's QUOTA_EXCEEDED.
func quotaExceeded(err error) bool {
	return hasReason(err, "quotaExceeded", "QUOTA_EXCEEDED")
}

// message is what Google said in err, short.
func message(err error) string {
	if ge := apiError(err); ge != nil {
		if ge.Message != "" {
			return ge.Message
		}
		for _, it := range ge.Errors {
			if it.Message != "" {
				return it.Message
			}
		}
	}
	var oe *opError
	if errors.As(err, &oe) {
		return oe.message
	}
	return ""
}

// callError turns a failed call that did (a verb: "read", "change") to
// what into a jit.Error a user can act on when Google refused it (403),
// did not find it (404) or ran out of quota, and wraps anything else.
func callError(err error, verb, what string) error {
	if err == nil {
		return nil
	}
	switch {
	case quotaExceeded(err):
		return &jit.Error{Code: jit.EConflict, Target: what,
			Message: fmt.Sprintf("Google Cloud quota reached: cannot %s %s (%s)", verb, what, clip(message(err)))}
	case status(err) == http.StatusForbidden || status(err) == http.StatusUnauthorized:
		msg := "ajar lacks permission to " + verb + " " + what
		if r := reasons(err); len(r) > 0 && r[0] != "" {
			msg += " (" + r[0] + ")"
		}
		return &jit.Error{Code: jit.EForbidden, Message: msg, Target: what}
	case status(err) == http.StatusNotFound:
		return &jit.Error{Code: jit.ENotFound, Message: "not found in Google Cloud: " + what, Target: what}
	}
	return fmt.Errorf("%s %s: %w", verb, what, err)
}

func clip(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// UserError returns err as a *jit.Error a user can read: gcpfw's own
// errors as they are, a Google answer shortened to what was done and the
// status (cloudsync.Explainer).
func UserError(err error) *jit.Error {
	var je *jit.Error
	if errors.As(err, &je) {
		return je
	}
	ge := apiError(err)
	if ge == nil {
		return nil
	}
	msg := fmt.Sprintf("Google Cloud answered %d %s", ge.Code, http.StatusText(ge.Code))
	if r := reasons(err); len(r) > 0 && r[0] != "" {
		msg += " (" + r[0] + ")"
	}
	if what, _, ok := strings.Cut(err.Error(), ": googleapi"); ok && what != "" {
		msg = what + ": " + msg
	}
	return jit.Errorf(jit.EUnavailable, "%s", msg)
}
