package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ajarhq/ajar/internal/jit"
)

// A host listening on more ports than a report may carry reports the
// lowest ones (the management ports among them), never a report the
// server refuses.
func TestListeningSocketsBounded(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st\n")
	for i, port := range append([]int{22}, func() []int {
		var ps []int
		for p := 40000; p < 42000; p++ {
			ps = append(ps, p)
		}
		return ps
	}()...) {
		fmt.Fprintf(&b, "%4d: 00000000:%04X 00000000:0000 0A\n", i, port)
	}
	if err := os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := ListeningSockets(root)
	if len(got) != jit.MaxReportSockets {
		t.Fatalf("got %d sockets, want %d", len(got), jit.MaxReportSockets)
	}
	if got[0] != (jit.Socket{Protocol: jit.ProtoTCP, Port: 22}) {
		t.Errorf("first socket = %+v, want TCP 22", got[0])
	}
}
