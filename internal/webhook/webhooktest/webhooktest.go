// Package webhooktest is a webhook receiver for tests: a real HTTP server
// on loopback that checks every delivery's signature, deduplicates on the
// event id, and answers as the test says (errors, slowness) so that
// retries can be watched.
package webhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/webhook"
)

// Answer is how the receiver answers one delivery: after Delay (cut short
// when the sender gives up), with Status (200 when zero).
type Answer struct {
	Status int
	Delay  time.Duration
}

// Received is the first delivery of one event the receiver accepted.
type Received struct {
	ID      string
	Seq     int64
	Kind    string
	Attempt int // the Ajar-Delivery-Attempt header of the accepted one
	Body    []byte
}

// Receiver is a running receiver.
type Receiver struct {
	URL    string
	Secret string
	// Answer decides how to answer the n-th delivery (from 1) of event
	// id; nil accepts everything.
	Answer func(id string, n int) Answer

	mu       sync.Mutex
	seen     map[string]int      // deliveries per event id, accepted or not
	accepted map[string]Received // the first accepted delivery per id
	dups     int                 // accepted deliveries of an id accepted before
	bad      []string            // why deliveries were refused as unsigned
	total    int
	changed  chan struct{}
}

// Start starts a receiver that expects bodies signed with secret.
func Start(t testing.TB, secret string) *Receiver {
	t.Helper()
	r := &Receiver{Secret: secret, seen: map[string]int{}, accepted: map[string]Received{}, changed: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/hook"
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	id := req.Header.Get(webhook.HeaderEventID)
	if err := webhook.Verify(r.Secret, req.Header.Get(webhook.HeaderSignature), body, time.Now(), webhook.ReplayWindow); err != nil || id == "" || !json.Valid(body) {
		r.mu.Lock()
		r.bad = append(r.bad, "event "+id+": "+errText(err))
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	r.seen[id]++
	n := r.seen[id]
	answer := r.Answer
	r.mu.Unlock()
	a := Answer{}
	if answer != nil {
		a = answer(id, n)
	}
	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-req.Context().Done():
			return
		}
	}
	if a.Status != 0 && a.Status/100 != 2 {
		http.Error(w, "try again later", a.Status)
		return
	}
	seq, _ := strconv.ParseInt(req.Header.Get(webhook.HeaderEventSeq), 10, 64)
	attempt, _ := strconv.Atoi(req.Header.Get(webhook.HeaderAttempt))
	r.mu.Lock()
	r.total++
	if _, dup := r.accepted[id]; dup {
		r.dups++
	} else {
		r.accepted[id] = Received{ID: id, Seq: seq, Kind: req.Header.Get(webhook.HeaderEventKind), Attempt: attempt, Body: body}
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

func errText(err error) string {
	if err == nil {
		return "no event id or not JSON"
	}
	return err.Error()
}

// Accepted returns the first accepted delivery of every event, by id.
func (r *Receiver) Accepted() map[string]Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Received, len(r.accepted))
	for k, v := range r.accepted {
		out[k] = v
	}
	return out
}

// Seen returns how many deliveries of event id arrived, accepted or not.
func (r *Receiver) Seen(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

// Stats returns how many deliveries were accepted, how many of them
// repeated an event accepted before, and the refused signatures.
func (r *Receiver) Stats() (total, dups int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total, r.dups, append([]string(nil), r.bad...)
}

// WaitFor waits until every id in ids was accepted, and reports whether
// that happened within timeout.
func (r *Receiver) WaitFor(ids []string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		got := r.Accepted()
		all := true
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				all = false
				break
			}
		}
		if all {
			return true
		}
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}
