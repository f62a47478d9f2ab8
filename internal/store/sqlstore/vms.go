package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// VMs.

const vmCols = `id, name, grp, backend, os, addresses, labels, external_id, created_at, revision, report`

func scanVM(s scanner) (jit.VM, error) {
	var vm jit.VM
	var addrs, labels string
	var report sql.NullString
	var created int64
	if err := s.Scan(&vm.ID, &vm.Name, &vm.Group, &vm.Backend, &vm.OS, &addrs, &labels, &vm.ExternalID, &created, &vm.Revision, &report); err != nil {
		return vm, err
	}
	vm.CreatedAt = fromNanos(created)
	if err := json.Unmarshal([]byte(addrs), &vm.Addresses); err != nil {
		return vm, fmt.Errorf("vm %s addresses: %w", vm.ID, err)
	}
	if err := json.Unmarshal([]byte(labels), &vm.Labels); err != nil {
		return vm, fmt.Errorf("vm %s labels: %w", vm.ID, err)
	}
	if report.Valid && report.String != "" {
		vm.Report = new(jit.Report)
		if err := json.Unmarshal([]byte(report.String), vm.Report); err != nil {
			return vm, fmt.Errorf("vm %s report: %w", vm.ID, err)
		}
	}
	return vm, nil
}

func (t *SQLTx) CreateVM(vm *jit.VM) error {
	if vm.Addresses == nil {
		vm.Addresses = []string{}
	}
	if vm.Labels == nil {
		vm.Labels = map[string]string{}
	}
	if vm.Revision == 0 {
		vm.Revision = 1
	}
	_, err := t.Q.Exec(t.Ctx, t.rebind(`INSERT INTO vms (`+vmCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`),
		vm.ID, vm.Name, vm.Group, vm.Backend, vm.OS, toJSON(vm.Addresses), toJSON(vm.Labels), vm.ExternalID, nanos(vm.CreatedAt), vm.Revision)
	if err == nil {
		return nil
	}
	// Both databases name the violated index (and on PostgreSQL nothing
	// more can be asked in this transaction).
	if idx, ok := t.conflict(err); ok && idx == "vms_external_id" {
		return &jit.Error{Code: jit.EConflict, Message: fmt.Sprintf("a %s VM with external id %s is already registered", vm.Backend, vm.ExternalID), Target: "externalId"}
	}
	if err = t.dbErr(err); jit.ErrorCode(err) == jit.EConflict {
		return &jit.Error{Code: jit.EConflict, Message: fmt.Sprintf("a VM named %s already exists in group %s", vm.Name, vm.Group), Target: "name"}
	}
	return err
}

// conflict reports whether err is a uniqueness violation and of which
// index.
func (t *SQLTx) conflict(err error) (string, bool) {
	if t.Dialect.Conflict == nil {
		return "", false
	}
	return t.Dialect.Conflict(err)
}

func (t *SQLTx) GetVM(id string) (jit.VM, error) {
	vm, err := scanVM(t.row(`SELECT `+vmCols+` FROM vms WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return vm, jit.Errorf(jit.ENotFound, "VM %s not found", id)
	}
	return vm, err
}

func (t *SQLTx) GetVMAccess(id, user string, targets []store.GrantTarget) (jit.VM, *jit.Policy, []jit.Grant, error) {
	match := "1=0"
	args := []any{user}
	if len(targets) > 0 {
		match = strings.TrimSuffix(strings.Repeat("(g.port = ? AND g.source = ?) OR ", len(targets)), " OR ")
		for _, gt := range targets {
			args = append(args, gt.Port, gt.Source)
		}
	}
	rows, err := t.query(`SELECT v.id, v.name, v.grp, v.backend, v.os, v.addresses, v.labels, v.external_id, v.created_at, v.revision, NULL,
		p.body, p.updated_at, p.updated_by,
		COALESCE(g.id, ''), COALESCE(g.request_id, ''), COALESCE(g.vm_id, ''), COALESCE(g.vm_name, ''), COALESCE(g.grp, ''),
		COALESCE(g.port, 0), COALESCE(g.protocol, ''), COALESCE(g.source, ''), COALESCE(g.usr, ''), COALESCE(g.start_time, 0),
		COALESCE(g.end_time, 0), COALESCE(g.status, ''), g.ended_at, COALESCE(g.ended_by, '')
		FROM vms v LEFT JOIN policies p ON p.vm_id = v.id
		LEFT JOIN grants g ON g.vm_id = v.id AND g.status = 'active' AND g.usr = ? AND (`+match+`)
		WHERE v.id = ?`, append(args, id)...) // no ORDER BY: it would lead SQLite to an index of every active grant
	if err != nil {
		return jit.VM{}, nil, nil, err
	}
	defer rows.Close()
	var vm jit.VM
	var body, by sql.NullString
	var upd sql.NullInt64
	var active []jit.Grant
	found := false
	for rows.Next() {
		// One row: the VM's columns, the policy's, then a grant's (empty
		// when none matched); scanVM and scanGrant each decode their part.
		var g jit.Grant
		var vmDest []any
		var gerr error
		vm, err = scanVM(scanFunc(func(dest ...any) error {
			vmDest = dest
			g, gerr = scanGrant(scanFunc(func(gdest ...any) error {
				return rows.Scan(append(append(vmDest, &body, &upd, &by), gdest...)...)
			}))
			return gerr
		}))
		if err != nil {
			return vm, nil, nil, err
		}
		found = true
		if g.ID != "" {
			active = append(active, g)
		}
	}
	if err := rows.Err(); err != nil {
		return vm, nil, nil, err
	}
	if !found {
		return vm, nil, nil, jit.Errorf(jit.ENotFound, "VM %s not found", id)
	}
	slices.SortFunc(active, func(a, b jit.Grant) int { return a.StartTime.Compare(b.StartTime) })
	if !body.Valid {
		return vm, nil, active, nil
	}
	p, err := decodePolicy(vm.ID, body.String, upd.Int64, by.String)
	return vm, &p, active, err
}

// scanFunc adapts a function to the Scan method scanVM takes.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

func (t *SQLTx) ListVMs(f store.VMFilter) ([]jit.VM, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"grp", f.Group}, {"name", f.Name}, {"backend", f.Backend}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	where, args = in(where, args, "grp", f.Groups)
	where, args = in(where, args, "id", f.IDs)
	switch f.Policy {
	case store.WithPolicy:
		where = append(where, "EXISTS (SELECT 1 FROM policies p WHERE p.vm_id = vms.id)")
	case store.WithoutPolicy:
		where = append(where, "NOT EXISTS (SELECT 1 FROM policies p WHERE p.vm_id = vms.id)")
	}
	order := ` ORDER BY grp, name`
	if f.Desc {
		order = ` ORDER BY grp DESC, name DESC`
	}
	switch {
	case f.AfterGroup == "" && f.AfterName == "":
	case f.Desc:
		where = append(where, "(grp < ? OR (grp = ? AND name < ?))")
		args = append(args, f.AfterGroup, f.AfterGroup, f.AfterName)
	default:
		where = append(where, "(grp > ? OR (grp = ? AND name > ?))")
		args = append(args, f.AfterGroup, f.AfterGroup, f.AfterName)
	}
	rows, err := t.query(`SELECT `+vmCols+` FROM vms`+whereClause(where)+order+limitClause(f.Limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.VM
	for rows.Next() {
		vm, err := scanVM(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, vm)
	}
	return out, rows.Err()
}

func limitClause(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + strconv.Itoa(n)
}

func (t *SQLTx) VMUsage(vmIDs []string, since, now time.Time) (map[string]store.VMUsage, error) {
	out := make(map[string]store.VMUsage, len(vmIDs))
	for len(vmIDs) > 0 {
		chunk := vmIDs[:min(len(vmIDs), 500)]
		vmIDs = vmIDs[len(chunk):]
		// Each figure is one index range of grants (vm_id, start_time) or
		// (vm_id, status): the cost follows the page, not the table.
		where, args := in(nil, []any{nanos(since), nanos(now)}, "v.id", chunk)
		rows, err := t.query(`SELECT v.id,
			(SELECT COUNT(DISTINCT g.request_id) FROM grants g WHERE g.vm_id = v.id AND g.start_time >= ?),
			(SELECT COUNT(*) FROM grants g WHERE g.vm_id = v.id AND g.status = 'active' AND g.end_time > ?),
			l.start_time, l.usr
			FROM vms v LEFT JOIN grants l ON l.id = (SELECT g.id FROM grants g WHERE g.vm_id = v.id ORDER BY g.start_time DESC, g.id LIMIT 1)`+
			whereClause(where), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var u store.VMUsage
			var last sql.NullInt64
			var user sql.NullString
			if err := rows.Scan(&id, &u.Approved, &u.ActiveGrants, &last, &user); err != nil {
				rows.Close()
				return nil, err
			}
			if last.Valid {
				la := fromNanos(last.Int64)
				u.LastAccess, u.LastUser = &la, user.String
			}
			out[id] = u
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *SQLTx) UpdateVM(vm jit.VM) error {
	n, err := t.exec(`UPDATE vms SET os = ?, addresses = ?, labels = ?, external_id = ? WHERE id = ?`,
		vm.OS, toJSON(vm.Addresses), toJSON(vm.Labels), vm.ExternalID, vm.ID)
	if err != nil {
		return err
	}
	return affected(n, "VM", vm.ID)
}

func (t *SQLTx) DeleteVM(id string) error {
	t.AuthChanged = true // its agent's token goes with it
	for _, q := range []string{`DELETE FROM policies WHERE vm_id = ?`, `DELETE FROM tokens WHERE vm_id = ?`} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	n, err := t.exec(`DELETE FROM vms WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if err := affected(n, "VM", id); err != nil {
		return err
	}
	t.Changed = append(t.Changed, id)
	return nil
}

func (t *SQLTx) BumpRevision(vmID string) error {
	t.Changed = append(t.Changed, vmID)
	return nil
}

// bumpRevisions increases the revision of the VMs, once each.
func (t *SQLTx) bumpRevisions(ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		w, args := in(nil, nil, "id", ids[:n])
		if err := t.write(`UPDATE vms SET revision = revision + 1`+whereClause(w), args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func (t *SQLTx) SetReport(vmID string, rep *jit.Report) error {
	var v any
	if rep != nil {
		v = toJSON(rep)
	}
	n, err := t.exec(`UPDATE vms SET report = ? WHERE id = ?`, v, vmID)
	if err != nil {
		return err
	}
	return affected(n, "VM", vmID)
}
