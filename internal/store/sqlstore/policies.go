package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Policies.

type policyBody struct {
	Ports                    []jit.PortRule     `json:"ports"`
	RequireJustification     bool               `json:"requireJustification"`
	CloseConnectionsOnExpiry bool               `json:"closeConnectionsOnExpiry"`
	CreatedAt                int64              `json:"createdAt,omitempty"`
	Written                  []jit.PortRuleText `json:"written,omitempty"`
	Approval                 *jit.Approval      `json:"approval,omitempty"`
}

func (t *SQLTx) PutPolicy(p jit.Policy) error {
	var created int64
	if !p.CreatedAt.IsZero() {
		created = nanos(p.CreatedAt)
	}
	body := toJSON(policyBody{p.Ports, p.RequireJustification, p.CloseConnectionsOnExpiry, created, p.Written, p.Approval})
	_, err := t.exec(`INSERT INTO policies (vm_id, body, updated_at, updated_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (vm_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		p.VMID, body, nanos(p.UpdatedAt), p.UpdatedBy)
	return err
}

func scanPolicy(s scanner) (jit.Policy, error) {
	var vmID, body, by string
	var upd int64
	if err := s.Scan(&vmID, &body, &upd, &by); err != nil {
		return jit.Policy{VMID: vmID}, err
	}
	return decodePolicy(vmID, body, upd, by)
}

func decodePolicy(vmID, body string, updated int64, by string) (jit.Policy, error) {
	p := jit.Policy{VMID: vmID, UpdatedAt: fromNanos(updated), UpdatedBy: by}
	var b policyBody
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		return p, fmt.Errorf("policy of %s: %w", vmID, err)
	}
	p.Ports, p.RequireJustification, p.CloseConnectionsOnExpiry, p.Written, p.Approval = b.Ports, b.RequireJustification, b.CloseConnectionsOnExpiry, b.Written, b.Approval
	if b.CreatedAt != 0 {
		p.CreatedAt = fromNanos(b.CreatedAt)
	}
	return p, nil
}

func (t *SQLTx) GetPolicy(vmID string) (jit.Policy, error) {
	p, err := scanPolicy(t.row(`SELECT vm_id, body, updated_at, updated_by FROM policies WHERE vm_id = ?`, vmID))
	if errors.Is(err, sql.ErrNoRows) {
		return p, jit.Errorf(jit.ENotFound, "VM %s has no JIT policy", vmID)
	}
	return p, err
}

func (t *SQLTx) DeletePolicy(vmID string) error {
	n, err := t.exec(`DELETE FROM policies WHERE vm_id = ?`, vmID)
	if err == nil && n == 0 {
		return jit.Errorf(jit.ENotFound, "VM %s has no JIT policy", vmID)
	}
	return err
}

func (t *SQLTx) ListPolicies(f store.VMFilter) ([]jit.Policy, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"v.grp", f.Group}, {"v.name", f.Name}, {"v.backend", f.Backend}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	where, args = in(where, args, "v.grp", f.Groups)
	where, args = in(where, args, "v.id", f.IDs)
	rows, err := t.query(`SELECT p.vm_id, p.body, p.updated_at, p.updated_by FROM policies p JOIN vms v ON v.id = p.vm_id`+
		whereClause(where)+` ORDER BY v.grp, v.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Policy
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
