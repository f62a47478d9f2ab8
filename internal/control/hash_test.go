package control

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store/sqlite"
)

// TestHashingCapped checks that argon2id hashing is capped: with every
// slot taken, a sign-in waits its turn briefly, then gets rate_limited
// with a wait; with a slot free it proceeds.
func TestHashingCapped(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := New(db, log, time.Now)
	c.hashWait = 50 * time.Millisecond
	if cap(c.hashing) < 1 {
		t.Fatalf("%d hashing slots", cap(c.hashing))
	}
	for range cap(c.hashing) {
		c.hashing <- struct{}{}
	}
	addr := netip.MustParseAddr("198.51.100.9")
	_, _, err = c.SignIn(ctx, "nobody", "some password here", addr)
	if jit.ErrorCode(err) != jit.ERateLimited || jit.ErrorRetryAfter(err) <= 0 {
		t.Fatalf("sign-in with every hashing slot taken = %v, want rate_limited with a wait", err)
	}
	<-c.hashing
	if _, _, err := c.SignIn(ctx, "nobody", "some password here", addr); jit.ErrorCode(err) != jit.EUnauthorized {
		t.Fatalf("sign-in with a slot free = %v, want unauthorized", err)
	}
}
