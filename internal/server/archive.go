package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// exportArchive streams the events an archive cut at before takes, as
// JSON lines; nothing leaves the log until confirmArchive.
func (s *Server) exportArchive(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	before, err := queryTime(r, "before")
	if err != nil {
		return err
	}
	if before.IsZero() {
		return jit.Invalid("before", "before is required: an RFC 3339 time such as 2026-01-02T00:00:00Z; events before it are archived")
	}
	return httpio.StreamEvents(w, r, s.log, "jsonl", "ajar-archive.jsonl", func(fn func(*jit.Event) error) error {
		return s.ctl.ExportArchive(r.Context(), a, before, fn)
	})
}

func (s *Server) confirmArchive(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.ArchiveConfirm
	if err := decode(w, r, &in); err != nil {
		return err
	}
	out, err := s.ctl.ConfirmArchive(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, out)
}

// followActivity streams, as JSON lines, the events the filters select
// after the sequence number in after, then every new one as it commits,
// until the client goes away or the server stops.
func (s *Server) followActivity(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if q := r.URL.Query(); q.Has("cursor") || q.Has("limit") || (q.Get("format") != "" && q.Get("format") != "jsonl") {
		return jit.Invalid("follow", "follow streams JSON lines from after on: it takes no cursor, limit or format other than jsonl")
	}
	f, err := eventFilter(r, 1)
	if err != nil {
		return err
	}
	started, authed := false, time.Now()
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	start := func() {
		started = true
		w.Header().Set("Content-Type", "application/jsonl")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no") // a proxy passes each line on at once
		w.WriteHeader(http.StatusOK)
		rc.Flush()
	}
	err = s.ctl.FollowEvents(r.Context(), a, f, func(batch []jit.Event) error {
		if !started {
			start()
		}
		for i := range batch {
			if err := enc.Encode(&batch[i]); err != nil {
				return err
			}
		}
		return rc.Flush()
	}, func() error {
		if !started {
			start()
		}
		// A token revoked or expired while following ends the stream.
		if time.Since(authed) < followReauth {
			return nil
		}
		authed = time.Now()
		_, err := s.authenticate(r)
		return err
	})
	if err != nil && !started {
		return err
	}
	if err != nil && r.Context().Err() == nil {
		s.log.Warn("activity follow ended", "err", err)
	}
	return nil
}

// followReauth is how often a follower's token is checked again.
const followReauth = 30 * time.Second
