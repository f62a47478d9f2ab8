package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Activity log.

const eventCols = `seq, time, actor, actor_address, vm_id, grp, operation, outcome, details, prev_hash, hash`

func (t *SQLTx) AppendEvent(events ...*jit.Event) error {
	t.Events = append(t.Events, events...)
	return nil
}

// readHead reads the activity log's last event into head.
func (t *SQLTx) readHead(head *ChainHead) error {
	var seq sql.NullInt64
	var prev sql.NullString
	err := t.row(`SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if errors.Is(err, sql.ErrNoRows) {
		// Every event was archived: the log goes on from its checkpoint.
		cp, _, err := t.LogCheckpoint()
		if err != nil {
			return err
		}
		*head = ChainHead{Seq: cp.Seq, Hash: cp.Hash, Known: true}
		return nil
	}
	if err != nil {
		return err
	}
	*head = ChainHead{Seq: seq.Int64, Hash: prev.String, Known: true}
	return nil
}

func (t *SQLTx) LogCheckpoint() (jit.Anchor, bool, error) {
	var a jit.Anchor
	err := t.row(`SELECT seq, hash FROM log_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&a.Seq, &a.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return jit.Anchor{}, false, nil
	}
	if err != nil {
		return jit.Anchor{}, false, err
	}
	return a, true, nil
}

func (t *SQLTx) ArchiveEvents(through jit.Anchor, at time.Time, by string) (int64, error) {
	var hash string
	err := t.row(`SELECT hash FROM events WHERE seq = ?`, through.Seq).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, jit.Errorf(jit.ENotFound, "event %d is not in the activity log (archived already, or not written yet)", through.Seq)
	}
	if err != nil {
		return 0, err
	}
	if hash != through.Hash {
		return 0, jit.Errorf(jit.EConflict, "event %d has hash %s, not %s", through.Seq, hash, through.Hash)
	}
	n, err := t.exec(`DELETE FROM events WHERE seq <= ?`, through.Seq)
	if err != nil {
		return 0, err
	}
	if _, err := t.exec(`INSERT INTO log_checkpoints (seq, hash, archived_at, archived_by) VALUES (?, ?, ?, ?)`,
		through.Seq, through.Hash, nanos(at), by); err != nil {
		return 0, err
	}
	return n, nil
}

// appendEvents writes events after head, chaining each to the one before,
// and moves head on.
func (t *SQLTx) appendEvents(head *ChainHead, events []*jit.Event) error {
	if !head.Known {
		if err := t.readHead(head); err != nil {
			return err
		}
	}
	for len(events) > 0 {
		chunk := events[:min(len(events), 300)]
		events = events[len(chunk):]
		seq, prev := head.Seq, head.Hash
		args := make([]any, 0, 11*len(chunk))
		for _, e := range chunk {
			e.Seq, e.PrevHash = seq+1, prev
			e.Time = e.Time.UTC()
			if len(e.Details) == 0 {
				e.Details = json.RawMessage("{}")
			} else if b, err := json.Marshal(e.Details); err == nil {
				// Hash the form every JSON export writes (compact, HTML
				// escaped), so that an exported event still verifies.
				e.Details = b
			}
			e.Hash = e.ComputeHash()
			seq, prev = e.Seq, e.Hash
			args = append(args, e.Seq, nanos(e.Time), e.Actor, e.ActorAddress, e.VMID, e.Group, e.Operation, e.Outcome, string(e.Details), e.PrevHash, e.Hash)
		}
		row := "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		q := `INSERT INTO events (` + eventCols + `) VALUES ` + row + strings.Repeat(", "+row, len(chunk)-1)
		if err := t.write(q, args...); err != nil {
			head.Known = false
			return err
		}
		head.Seq, head.Hash = seq, prev
	}
	return nil
}

func scanEvent(s scanner) (jit.Event, error) {
	var e jit.Event
	var tm int64
	var details string
	err := s.Scan(&e.Seq, &tm, &e.Actor, &e.ActorAddress, &e.VMID, &e.Group, &e.Operation, &e.Outcome, &details, &e.PrevHash, &e.Hash)
	e.Time, e.Details = fromNanos(tm), json.RawMessage(details)
	return e, err
}

func (t *SQLTx) ListEvents(f store.EventFilter) ([]jit.Event, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"vm_id", f.VMID}, {"actor", f.Actor}, {"operation", f.Operation}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if f.ActorPrefix != "" {
		where = append(where, "substr(actor, 1, ?) = ?")
		args = append(args, utf8.RuneCountInString(f.ActorPrefix), f.ActorPrefix)
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, nanos(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, nanos(f.Until))
	}
	if f.AfterSeq > 0 {
		if f.Desc {
			where = append(where, "seq < ?")
		} else {
			where = append(where, "seq > ?")
		}
		args = append(args, f.AfterSeq)
	}
	where, args = in(where, args, "grp", f.Groups)
	q := `SELECT ` + eventCols + ` FROM events` + whereClause(where) + ` ORDER BY seq`
	if f.Desc {
		q += " DESC"
	}
	q += limitClause(f.Limit)
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t *SQLTx) WalkEvents(fn func(*jit.Event) bool) error {
	rows, err := t.query(`SELECT ` + eventCols + ` FROM events ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if !fn(&e) {
			return nil
		}
	}
	return rows.Err()
}
