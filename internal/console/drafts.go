package console

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// drafts keeps, for a short while, what a form's POST could not finish
// (its fields as typed and the errors found), so that the handler can
// redirect to a page that shows them (post/redirect/get): reloading that
// page or going back and forth never sends the form again. A draft is
// read only by the user who made it; drafts live in memory (a restart
// loses them: the page then shows a fresh form).
type drafts struct {
	mu sync.Mutex
	m  map[string]draft
}

type draft struct {
	user    string
	expires time.Time
	v       any
}

const (
	draftTTL  = 30 * time.Minute
	maxDrafts = 10000
	// maxUserDrafts bounds one user's drafts (a form is at most MaxForm):
	// past it, their oldest goes.
	maxUserDrafts = 16
)

// put keeps v for user and returns its id.
func (d *drafts) put(user string, v any, now time.Time) string {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]draft{}
	}
	if len(d.m) >= maxDrafts {
		for k, x := range d.m {
			if now.After(x.expires) {
				delete(d.m, k)
			}
		}
		for k := range d.m { // still full: drop any (map order is random)
			if len(d.m) < maxDrafts {
				break
			}
			delete(d.m, k)
		}
	}
	mine, oldest := 0, ""
	for k, x := range d.m {
		if x.user == user {
			mine++
			if oldest == "" || x.expires.Before(d.m[oldest].expires) {
				oldest = k
			}
		}
	}
	if mine >= maxUserDrafts {
		delete(d.m, oldest)
	}
	d.m[id] = draft{user: user, expires: now.Add(draftTTL), v: v}
	return id
}

// get returns user's draft id, if it is still kept.
func (d *drafts) get(user, id string, now time.Time) (any, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	x, ok := d.m[id]
	if !ok || x.user != user || now.After(x.expires) {
		return nil, false
	}
	return x.v, true
}

// take returns user's draft id and forgets it: for what is shown once.
func (d *drafts) take(user, id string, now time.Time) (any, bool) {
	v, ok := d.get(user, id, now)
	if ok {
		d.mu.Lock()
		delete(d.m, id)
		d.mu.Unlock()
	}
	return v, ok
}
