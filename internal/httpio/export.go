package httpio

import (
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// CSVHeader is the header row of the activity log's CSV export.
var CSVHeader = []string{"seq", "time", "actor", "actorAddress", "vmId", "group", "operation", "outcome", "details", "prevHash", "hash"}

// StreamEvents writes the events export yields to w as csv (with a header
// row) or jsonl, flushing as it goes. Headers are sent with the first
// event or at the end, so an error before any event comes back as an
// error; a later one cuts the body short and is logged.
func StreamEvents(w http.ResponseWriter, r *http.Request, log *slog.Logger, format, filename string, export func(func(*jit.Event) error) error) error {
	started := false
	start := func() {
		started = true
		if format == "csv" {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/jsonl")
		}
		w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
		w.WriteHeader(http.StatusOK)
	}
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	n := 0
	err := export(func(e *jit.Event) error {
		if !started {
			start()
			if format == "csv" {
				cw.Write(CSVHeader)
			}
		}
		if format == "csv" {
			cw.Write([]string{strconv.FormatInt(e.Seq, 10), e.Time.Format(time.RFC3339Nano), csvSafe(e.Actor), e.ActorAddress, e.VMID, csvSafe(e.Group),
				e.Operation, e.Outcome, csvSafe(string(e.Details)), e.PrevHash, e.Hash})
		} else if err := enc.Encode(e); err != nil {
			return err
		}
		if n++; n%exportFlush == 0 {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
			rc.Flush()
		}
		return nil
	})
	if err != nil && !started {
		return err
	}
	if err != nil {
		log.Warn("activity export ended early", "path", r.URL.Path, "events", n, "err", err)
		return nil
	}
	if !started {
		start()
		if format == "csv" {
			cw.Write(CSVHeader)
		}
	}
	cw.Flush()
	return nil
}

// exportFlush is how many events an export writes between flushes.
const exportFlush = 500

// csvSafe defuses values a spreadsheet would run as formulas.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}
