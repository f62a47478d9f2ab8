package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Requests' approval state: the columns status, grp and pending_until,
// and the rest as JSON in state ("" for requests approved when made).

const requestCols = `id, usr, address, justification, created_at, status, grp, state, pending_until`

type requestState struct {
	Asked     *jit.AccessRequest `json:"asked,omitempty"`
	Required  int                `json:"required,omitempty"`
	Decisions []jit.Decision     `json:"decisions,omitempty"`
	DecidedAt *time.Time         `json:"decidedAt,omitempty"`
}

func requestStatus(r jit.Request) string {
	if r.Status == "" {
		return jit.RequestApproved
	}
	return r.Status
}

func encodeRequestState(r jit.Request) string {
	if r.Asked == nil && r.Required == 0 && len(r.Decisions) == 0 && r.DecidedAt == nil {
		return ""
	}
	return toJSON(requestState{r.Asked, r.Required, r.Decisions, r.DecidedAt})
}

// pendingUntil is the pending_until of r: its wait's end while pending,
// NULL otherwise (the index of pending requests holds only those).
func pendingUntil(r jit.Request) any {
	if requestStatus(r) != jit.RequestPending {
		return nil
	}
	return nullNanos(r.ExpiresAt)
}

func scanRequest(s scanner) (jit.Request, error) {
	var r jit.Request
	var created int64
	var state string
	var until sql.NullInt64
	if err := s.Scan(&r.ID, &r.User, &r.Address, &r.Justification, &created, &r.Status, &r.Group, &state, &until); err != nil {
		return r, err
	}
	r.CreatedAt = fromNanos(created)
	r.Grants = []jit.Grant{}
	if until.Valid {
		t := fromNanos(until.Int64)
		r.ExpiresAt = &t
	}
	if state != "" {
		var st requestState
		if err := json.Unmarshal([]byte(state), &st); err != nil {
			return r, fmt.Errorf("request %s: %w", r.ID, err)
		}
		r.Asked, r.Required, r.Decisions, r.DecidedAt = st.Asked, st.Required, st.Decisions, st.DecidedAt
	}
	return r, nil
}

func (t *SQLTx) GetRequest(id string) (jit.Request, error) {
	r, err := scanRequest(t.row(`SELECT `+requestCols+` FROM requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, jit.Errorf(jit.ENotFound, "request %s not found", id)
	}
	if err != nil {
		return r, err
	}
	gs, err := t.grants(``, []string{"request_id = ?"}, []any{id}, `start_time DESC, id`, 0)
	if err != nil {
		return r, err
	}
	r.Grants = append(r.Grants, gs...)
	return r, nil
}

func (t *SQLTx) SetRequestState(r jit.Request, from string) (bool, error) {
	n, err := t.exec(`UPDATE requests SET status = ?, state = ?, pending_until = ? WHERE id = ? AND status = ?`,
		requestStatus(r), encodeRequestState(r), pendingUntil(r), r.ID, from)
	return n == 1, err
}

func (t *SQLTx) NextPendingEnd() (time.Time, bool, error) {
	var n sql.NullInt64
	if err := t.row(`SELECT MIN(pending_until) FROM requests WHERE status = 'pending'`).Scan(&n); err != nil {
		return time.Time{}, false, err
	}
	if !n.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(n.Int64), true, nil
}
