package console

import (
	"testing"
	"time"
)

// TestDraftsBounded checks that drafts are the user's own, expire, and
// that one user cannot keep more than maxUserDrafts.
func TestDraftsBounded(t *testing.T) {
	var d drafts
	now := time.Unix(1700000000, 0)
	first := d.put("alice", "a0", now)
	if _, ok := d.get("bob", first, now); ok {
		t.Error("bob reads alice's draft")
	}
	if v, ok := d.get("alice", first, now); !ok || v != "a0" {
		t.Errorf("alice's draft: %v %v", v, ok)
	}
	if _, ok := d.get("alice", first, now.Add(draftTTL+time.Second)); ok {
		t.Error("a draft outlives its time")
	}
	for i := range maxUserDrafts {
		d.put("alice", i, now.Add(time.Duration(i+1)*time.Second))
	}
	if _, ok := d.get("alice", first, now); ok {
		t.Error("alice's oldest draft is kept past the per-user bound")
	}
	n := 0
	for _, x := range d.m {
		if x.user == "alice" {
			n++
		}
	}
	if n != maxUserDrafts {
		t.Errorf("alice has %d drafts, want %d", n, maxUserDrafts)
	}
	if v, ok := d.take("alice", d.put("alice", "secret", now), now); !ok || v != "secret" {
		t.Errorf("take: %v %v", v, ok)
	}
}
