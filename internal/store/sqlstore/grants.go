package sqlstore

import (
	"database/sql"
	"errors"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Requests and grants.

func (t *SQLTx) CreateRequest(r jit.Request) error {
	return t.write(`INSERT INTO requests (id, usr, address, justification, created_at, status, grp, state, pending_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.User, r.Address, r.Justification, nanos(r.CreatedAt), requestStatus(r), r.Group, encodeRequestState(r), pendingUntil(r))
}

func (t *SQLTx) ListRequests(f store.RequestFilter) ([]jit.Request, error) {
	var where []string
	var args []any
	if f.User != "" {
		where = append(where, "usr = ?")
		args = append(args, f.User)
	}
	if !f.BeforeCreated.IsZero() {
		where = append(where, "(created_at < ? OR (created_at = ? AND id > ?))")
		args = append(args, nanos(f.BeforeCreated), nanos(f.BeforeCreated), f.BeforeID)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	if f.Groups != nil {
		where, args = in(where, args, "grp", f.Groups)
	}
	if f.NotUser != "" {
		where, args = append(where, "usr <> ?"), append(args, f.NotUser)
	}
	order := ` ORDER BY created_at DESC, id`
	if !f.PendingBy.IsZero() {
		where, args = append(where, "status = 'pending' AND pending_until <= ?"), append(args, nanos(f.PendingBy))
		if !f.AfterPending.IsZero() {
			where = append(where, "(pending_until > ? OR (pending_until = ? AND id > ?))")
			args = append(args, nanos(f.AfterPending), nanos(f.AfterPending), f.AfterID)
		}
		order = ` ORDER BY pending_until, id`
	}
	q := `SELECT ` + requestCols + ` FROM requests` + whereClause(where) + order + limitClause(f.Limit)
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	var out []jit.Request
	idx := map[string]int{}
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		idx[r.ID] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]string, 0, len(out))
	for _, r := range out {
		ids = append(ids, r.ID)
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		w, a := in(nil, nil, "request_id", chunk)
		grants, err := t.grants(``, w, a, `start_time DESC, id`, 0)
		if err != nil {
			return nil, err
		}
		for _, g := range grants {
			i := idx[g.RequestID]
			out[i].Grants = append(out[i].Grants, g)
		}
	}
	return out, nil
}

const grantCols = `id, request_id, vm_id, vm_name, grp, port, protocol, source, usr, start_time, end_time, status, ended_at, ended_by`

func (t *SQLTx) CreateGrant(g jit.Grant) error {
	return t.write(`INSERT INTO grants (`+grantCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.RequestID, g.VMID, g.VMName, g.Group, g.Port, g.Protocol, g.Source, g.User,
		nanos(g.StartTime), nanos(g.EndTime), g.Status, nullNanos(g.EndedAt), g.EndedBy)
}

func scanGrant(s scanner) (jit.Grant, error) {
	var g jit.Grant
	var start, end int64
	var ended sql.NullInt64
	err := s.Scan(&g.ID, &g.RequestID, &g.VMID, &g.VMName, &g.Group, &g.Port, &g.Protocol, &g.Source, &g.User,
		&start, &end, &g.Status, &ended, &g.EndedBy)
	g.StartTime, g.EndTime = fromNanos(start), fromNanos(end)
	if ended.Valid {
		e := fromNanos(ended.Int64)
		g.EndedAt = &e
	}
	return g, err
}

func (t *SQLTx) GetGrant(id string) (jit.Grant, error) {
	g, err := scanGrant(t.row(`SELECT `+grantCols+` FROM grants WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, jit.Errorf(jit.ENotFound, "grant %s not found", id)
	}
	return g, err
}

func (t *SQLTx) grants(from string, where []string, args []any, order string, limit int) ([]jit.Grant, error) {
	q := `SELECT ` + grantCols + ` FROM grants` + from + whereClause(where) + ` ORDER BY ` + order + limitClause(limit)
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

func (t *SQLTx) ListGrants(f store.GrantFilter) ([]jit.Grant, error) {
	var where []string
	var args []any
	if f.Status == jit.GrantActive {
		// Written out, so that the partial indexes of active grants apply
		// (PostgreSQL's generic plans cannot tell from a parameter).
		where, f.Status = append(where, "status = 'active'"), ""
	}
	for _, c := range []struct{ col, val string }{{"vm_id", f.VMID}, {"status", f.Status}, {"usr", f.User}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if f.Port != 0 {
		where = append(where, "port = ?")
		args = append(args, f.Port)
	}
	if f.Source != "" {
		where = append(where, "source = ?")
		args = append(args, f.Source)
	}
	if !f.EndingBy.IsZero() {
		where = append(where, "status = 'active' AND end_time <= ?")
		args = append(args, nanos(f.EndingBy))
	}
	if !f.Since.IsZero() {
		where = append(where, "start_time >= ?")
		args = append(args, nanos(f.Since))
	}
	if !f.BeforeStart.IsZero() {
		where = append(where, "(start_time < ? OR (start_time = ? AND id > ?))")
		args = append(args, nanos(f.BeforeStart), nanos(f.BeforeStart), f.BeforeID)
	}
	where, args = in(where, args, "grp", f.Groups)
	where, args = in(where, args, "vm_id", f.VMIDs)
	from, order := ``, `start_time DESC, id`
	if !f.EndingBy.IsZero() {
		// The first to end first: a range of grants_active_end.
		from, order = t.Dialect.indexedBy("grants_active_end"), `end_time`
	}
	return t.grants(from, where, args, order, f.Limit)
}

func (t *SQLTx) EndGrant(id, status string, endedAt time.Time, endedBy string) (bool, error) {
	n, err := t.exec(`UPDATE grants SET status = ?, ended_at = ?, ended_by = ? WHERE id = ? AND status = 'active'`,
		status, nanos(endedAt), endedBy, id)
	return n == 1, err
}

func (t *SQLTx) ShortenGrant(id string, end time.Time) (bool, error) {
	n, err := t.exec(`UPDATE grants SET end_time = ? WHERE id = ? AND status = 'active' AND end_time > ?`,
		nanos(end), id, nanos(end))
	return n == 1, err
}

func (t *SQLTx) NextGrantEnd() (time.Time, bool, error) {
	var n sql.NullInt64
	if err := t.row(`SELECT MIN(end_time) FROM grants` + t.Dialect.indexedBy("grants_active_end") + ` WHERE status = 'active'`).Scan(&n); err != nil {
		return time.Time{}, false, err
	}
	if !n.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(n.Int64), true, nil
}
