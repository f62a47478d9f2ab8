package azurensg

// The tests drive the real SDK clients against azurefake, the stateful
// in-memory Azure.

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/azurensg/azurefake"
)

const (
	fakeSub      = azurefake.Subscription
	fakeLocation = azurefake.Location
)

const (
	allow = azurefake.Allow
	deny  = azurefake.Deny
	tcp   = azurefake.TCP
	udp   = azurefake.UDP
	anyP  = azurefake.AnyProtocol
)

var (
	rule  = azurefake.Rule
	armID = azurefake.ID
)

type vmSpec = azurefake.VMSpec

type fakeAzure struct {
	*azurefake.Azure
	t *testing.T
}

func newFakeAzure(t *testing.T) *fakeAzure {
	return &fakeAzure{Azure: azurefake.New(t), t: t}
}

// client returns a Client whose SDK clients talk to f.
func (f *fakeAzure) client() *Client {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	return NewClient(f.Credential(), f.ClientOptions(), testLogger(f.t), now)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
