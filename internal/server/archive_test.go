package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

func (s *listServer) client(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.New(s.url, token, client.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addGroups makes n activity events (one group each).
func addGroups(t *testing.T, c *client.Client, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.CreateGroup(t.Context(), fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func parseJSONL(t *testing.T, b []byte) []jit.Event {
	t.Helper()
	var out []jit.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e jit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("archive line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// storedSeqs returns the sequence numbers left in the store's log.
func storedSeqs(t *testing.T, db store.Store) []int64 {
	t.Helper()
	var seqs []int64
	err := db.View(t.Context(), func(tx store.Tx) error {
		return tx.WalkEvents(func(e *jit.Event) bool { seqs = append(seqs, e.Seq); return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestArchiveKeepsTheChainProvable archives the log twice and checks at
// every step that the store lost exactly the archived events, the archives
// chain from the first event to the checkpoint the log continues, and
// every bad confirmation changes nothing.
func TestArchiveKeepsTheChainProvable(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		ctx := t.Context()
		admin := s.client(t, s.token)
		addGroups(t, admin, "old", 5)
		// Details as an agent may send them (spaces, HTML characters)
		// still verify once exported: the store hashes the form every
		// JSON export writes.
		err := s.db.Update(ctx, func(tx store.Tx) error {
			return tx.AppendEvent(&jit.Event{Time: time.Now(), Actor: "agent:x", Operation: jit.OpDriftDetect, Outcome: jit.OutcomeSuccess,
				Details: json.RawMessage("{ \"rule\": \"<drop> & more\",\n \"n\": 1 }")})
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		cut1 := time.Now()
		time.Sleep(5 * time.Millisecond)
		addGroups(t, admin, "mid", 4)
		time.Sleep(5 * time.Millisecond)
		cut2 := time.Now()
		time.Sleep(5 * time.Millisecond)
		addGroups(t, admin, "new", 3)
		all := storedSeqs(t, s.db)

		// A reader of everything may neither download nor confirm an
		// archive.
		if _, err = admin.CreateUser(ctx, jit.NewUser{Name: "auditor"}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CreateRoleBinding(ctx, "auditor", jit.RoleReader, jit.AllGroups); err != nil {
			t.Fatal(err)
		}
		tok, err := admin.CreateToken(ctx, jit.NewToken{User: "auditor", Name: "audit"})
		if err != nil {
			t.Fatal(err)
		}
		auditor := s.client(t, tok.Secret)
		all = storedSeqs(t, s.db)
		var je *jit.Error
		if err := auditor.ExportArchive(ctx, cut2, &bytes.Buffer{}); !errors.As(err, &je) || je.Code != jit.EForbidden {
			t.Fatalf("a reader downloaded an archive: %v", err)
		}
		if _, err := auditor.ConfirmArchive(ctx, jit.ArchiveConfirm{From: 1, Through: jit.Anchor{Seq: 1, Hash: fmt.Sprintf("%064d", 0)}}); !errors.As(err, &je) || je.Code != jit.EForbidden {
			t.Fatalf("a reader confirmed an archive: %v", err)
		}
		var archives [][]jit.Event
		for round, cut := range []time.Time{cut1, cut2} {
			var buf bytes.Buffer
			if err := admin.ExportArchive(ctx, cut, &buf); err != nil {
				t.Fatal(err)
			}
			evs := parseJSONL(t, buf.Bytes())
			if len(evs) == 0 {
				t.Fatalf("round %d: empty archive", round)
			}
			for _, e := range evs {
				if !e.Time.Before(cut) {
					t.Fatalf("round %d: event %d at %v is not before the cut %v", round, e.Seq, e.Time, cut)
				}
			}
			left := storedSeqs(t, s.db)
			if left[0] != evs[0].Seq {
				t.Fatalf("round %d: archive starts at %d, the log at %d", round, evs[0].Seq, left[0])
			}
			last := evs[len(evs)-1]
			through := jit.Anchor{Seq: last.Seq, Hash: last.Hash}

			// Bad confirmations change nothing.
			bad := []struct {
				in   jit.ArchiveConfirm
				code string
			}{
				{jit.ArchiveConfirm{From: evs[0].Seq, Through: jit.Anchor{Seq: last.Seq, Hash: evs[0].Hash}}, jit.EConflict},
				{jit.ArchiveConfirm{From: evs[0].Seq + 1, Through: through}, jit.EConflict},
				{jit.ArchiveConfirm{From: evs[0].Seq, Through: jit.Anchor{Seq: 1 << 40, Hash: last.Hash}}, jit.ENotFound},
				{jit.ArchiveConfirm{From: 0, Through: through}, jit.EInvalid},
				{jit.ArchiveConfirm{From: evs[0].Seq, Through: jit.Anchor{Seq: last.Seq, Hash: "zz"}}, jit.EInvalid},
			}
			for _, b := range bad {
				_, err := admin.ConfirmArchive(ctx, b.in)
				var je *jit.Error
				if !errors.As(err, &je) || je.Code != b.code {
					t.Errorf("confirm %+v: got %v, want %s", b.in, err, b.code)
				}
			}
			if got := storedSeqs(t, s.db); len(got) != len(left) {
				t.Fatalf("a refused confirmation removed events: %d left of %d", len(got), len(left))
			}

			done, err := admin.ConfirmArchive(ctx, jit.ArchiveConfirm{From: evs[0].Seq, Through: through, Before: cut})
			if err != nil {
				t.Fatal(err)
			}
			if done.Removed != int64(len(evs)) || done.ArchivedThrough != through {
				t.Fatalf("confirm: %+v, want %d removed through %s", done, len(evs), through)
			}
			// Confirming again finds the events gone.
			if _, err := admin.ConfirmArchive(ctx, jit.ArchiveConfirm{From: evs[0].Seq, Through: through}); err == nil {
				t.Fatal("a second confirmation of the same archive passed")
			}
			rest := storedSeqs(t, s.db)
			if rest[0] != through.Seq+1 {
				t.Fatalf("after archiving through %d the log starts at %d", through.Seq, rest[0])
			}
			v, err := admin.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !v.OK || v.ArchivedThrough == nil || *v.ArchivedThrough != through || v.Events != int64(len(rest)) {
				t.Fatalf("verify after archive %d: %+v", round, v)
			}
			// The archive run is itself in the log.
			tail, err := admin.ListEvents(ctx, client.EventQuery{Operation: jit.OpLogArchive, After: through.Seq})
			if err != nil || len(tail) != round+1 {
				t.Fatalf("log.archive events: %v %v", tail, err)
			}
			archives = append(archives, evs)
		}

		// Genesis, through the archives, into the log: one chain, and
		// every event ever written is in exactly one place.
		var chain []jit.Event
		for _, a := range archives {
			chain = append(chain, a...)
		}
		v := jit.ChainVerifier{}
		for i := range chain {
			if !v.Add(&chain[i]) {
				t.Fatalf("archives: event %d: %s", v.BadSeq, v.Problem)
			}
		}
		cp := v.Head
		rest := storedSeqs(t, s.db)
		seen := map[int64]bool{}
		for _, e := range chain {
			seen[e.Seq] = true
		}
		for _, q := range rest {
			seen[q] = true
		}
		for _, q := range all {
			if !seen[q] {
				t.Errorf("event %d is neither archived nor in the log", q)
			}
		}
		sv, err := admin.Verify(ctx)
		if err != nil || !sv.OK || *sv.ArchivedThrough != cp {
			t.Fatalf("verify: %+v %v; archives end at %s", sv, err, cp)
		}

		// An anchor in the archives is reported as archived; one at
		// the checkpoint with another hash is a rewrite.
		av, err := admin.VerifyAnchored(ctx, jit.Anchor{Seq: 2, Hash: chain[1].Hash})
		if err != nil || !av.OK || !av.AnchorArchived {
			t.Fatalf("verify with an archived anchor: %+v %v", av, err)
		}
		rv, err := admin.VerifyAnchored(ctx, jit.Anchor{Seq: cp.Seq, Hash: chain[0].Hash})
		if err != nil || rv.OK {
			t.Fatalf("verify with a rewritten checkpoint anchor: %+v %v", rv, err)
		}

		// Tampering with the first event left breaks its link to the
		// checkpoint.
		err = s.db.Update(ctx, func(tx store.Tx) error {
			_, err := tx.ArchiveEvents(jit.Anchor{Seq: rest[0], Hash: "x"}, time.Now(), "test")
			return err
		})
		if err == nil {
			t.Fatal("ArchiveEvents accepted a wrong hash")
		}
	})
}

// TestFollowStreamsEventsInOrder follows the log, makes changes, and
// checks they arrive in order with none missing, across a resume.
func TestFollowStreamsEventsInOrder(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		admin := s.client(t, s.token)
		addGroups(t, admin, "before", 2)
		start, err := admin.ListEvents(t.Context(), client.EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		after := start[len(start)-1].Seq

		follow := func(ctx context.Context, from int64, got chan<- jit.Event) chan error {
			done := make(chan error, 1)
			go func() {
				done <- admin.FollowEvents(ctx, client.EventQuery{After: from}, func(e jit.Event) error {
					got <- e
					return nil
				}, nil)
			}()
			return done
		}
		got := make(chan jit.Event, 1000)
		ctx, cancel := context.WithCancel(t.Context())
		done := follow(ctx, after, got)
		// Writers in flight while the follower reads.
		writes := make(chan error, 1)
		go func() {
			for i := range 30 {
				if _, err := admin.CreateGroup(t.Context(), fmt.Sprintf("g-%d", i)); err != nil {
					writes <- err
					return
				}
			}
			writes <- nil
		}()
		var seqs []int64
		take := func(n int) {
			t.Helper()
			for range n {
				select {
				case e := <-got:
					seqs = append(seqs, e.Seq)
				case <-time.After(10 * time.Second):
					t.Fatalf("follow: only %d events arrived", len(seqs))
				}
			}
		}
		take(15)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Drain what arrived before the cancel.
		for len(got) > 0 {
			seqs = append(seqs, (<-got).Seq)
		}
		// Resume after the last one received.
		ctx2, cancel2 := context.WithCancel(t.Context())
		defer cancel2()
		done2 := follow(ctx2, seqs[len(seqs)-1], got)
		if err := <-writes; err != nil {
			t.Fatal(err)
		}
		take(30 - len(seqs))
		cancel2()
		if err := <-done2; err != nil {
			t.Fatal(err)
		}
		for i, q := range seqs {
			if q != after+int64(i)+1 {
				t.Fatalf("event %d of the stream is seq %d, want %d (seqs %v)", i, q, after+int64(i)+1, seqs)
			}
		}
		select {
		case e := <-got:
			t.Fatalf("an extra event arrived: %d", e.Seq)
		default:
		}
	})
}

// TestArchiveAndFollowBadInput: each bad query is a 400 naming the field,
// and changes nothing.
func TestArchiveAndFollowBadInput(t *testing.T) {
	stores(t, func(t *testing.T, s *listServer) {
		before := storedSeqs(t, s.db)
		for _, tc := range []struct{ path, target string }{
			{"/api/v1/activity/archive", "before"},
			{"/api/v1/activity/archive?before=yesterday", "before"},
			{"/api/v1/activity?follow=2", "follow"},
			{"/api/v1/activity?follow=1&limit=5", "follow"},
			{"/api/v1/activity?follow=1&format=csv", "follow"},
			{"/api/v1/activity?follow=1&after=-1", "after"},
		} {
			st, body := s.get(t, tc.path)
			var e struct {
				Error struct{ Code, Target string } `json:"error"`
			}
			if st != 400 || json.Unmarshal(body, &e) != nil || e.Error.Target != tc.target {
				t.Errorf("GET %s: %d %s, want 400 naming %s", tc.path, st, body, tc.target)
			}
		}
		if after := storedSeqs(t, s.db); len(after) != len(before) {
			t.Errorf("bad requests changed the log: %d events, were %d", len(after), len(before))
		}
	})
}
