package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// FuzzDesiredState decodes a desired state as the agent receives it and
// checks what the agent holds of it: no grant ever has more seconds left
// than the server gave it, none has a negative number, and none is added.
func FuzzDesiredState(f *testing.F) {
	for _, s := range []string{
		`{"vmId":"v","revision":3,"lock":[{"port":22,"protocol":"TCP"}],"grants":[{"id":"g","port":22,"protocol":"TCP","source":"198.51.100.7/32","endTime":"2026-12-02T10:00:00Z","remainingSeconds":3600}],"serverTime":"2026-12-02T09:00:00Z"}`,
		`{"grants":[{"id":"g","remainingSeconds":9223372036854775807}]}`,
		`{"grants":[{"id":"g","endTime":"0001-01-01T00:00:01Z"}],"serverTime":"9999-12-31T23:59:59Z"}`,
		`{"grants":[{"id":"a","remainingSeconds":5},{"id":"a","remainingSeconds":1}]}`,
	} {
		f.Add([]byte(s), int64(0))
	}
	received := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, later int64) {
		var st jit.DesiredState
		if json.Unmarshal(data, &st) != nil {
			return
		}
		gave := map[string]int64{} // the most seconds the server gave each grant id
		for _, g := range st.Grants {
			secs := int64((left(st, g) + time.Second/2) / time.Second)
			if s, ok := gave[g.ID]; !ok || secs > s {
				gave[g.ID] = secs
			}
		}
		h := hold(st, received)
		for _, now := range []time.Time{received, received.Add(time.Duration(later)), received.Add(-time.Hour)} {
			out := h.at(now)
			if len(out.Grants) > len(st.Grants) {
				t.Fatalf("at(%v) holds %d grants of %d", now, len(out.Grants), len(st.Grants))
			}
			for _, g := range out.Grants {
				if g.RemainingSeconds < 0 || g.RemainingSeconds > max(gave[g.ID], 0) {
					t.Fatalf("at(%v): grant %s has %d s left; the server gave %d", now, g.ID, g.RemainingSeconds, gave[g.ID])
				}
			}
		}
	})
}
