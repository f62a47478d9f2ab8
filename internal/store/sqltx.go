package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Querier is what SQLTx needs of a connection (Conn).
type Querier interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Dialect holds what differs between the SQL databases.
type Dialect struct {
	// Numbered placeholders ($1, $2, ...) instead of ?.
	Numbered bool
	// Begin starts a write transaction.
	Begin []Stmt
	// ChainLock takes the lock that keeps the activity log one linear
	// chain across servers (PostgreSQL); a batch takes it only when it
	// appends events. Nil when Begin serializes writers already (SQLite).
	ChainLock []Stmt
	// Retry reports whether err means the database gave up on the
	// transaction (a deadlock, a serialization failure) and it should run
	// again; nil when that cannot happen.
	Retry func(err error) bool
	// Conflict reports whether err is a uniqueness violation, and names
	// the violated index or columns as the database does.
	Conflict func(err error) (index string, ok bool)
	// Down reports whether err means the database cannot be used for now
	// (unreachable, shutting down, out of disk): the error then reaches
	// users as jit.EUnavailable.
	Down func(err error) bool
	// TxID, when set, is a query for the open transaction's id as text, and
	// TxStatus one for whether the transaction with id $1 committed
	// ("committed", "aborted" or "in progress"): with them a COMMIT whose
	// answer was lost is looked up rather than reported as unknown.
	TxID, TxStatus string
	// Notify returns the statements that announce, inside the transaction
	// about to commit, the VMs whose desired state it changed; nil when the
	// adapter publishes changes itself after the commit.
	Notify func(vmIDs []string) []Stmt
}

// ChainHead is the last event of the activity log as a write transaction
// sees it, kept between appends so that each append is one statement.
type ChainHead struct {
	Seq   int64
	Hash  string
	Known bool
}

// SQLTx implements Tx over database/sql for both SQL adapters.
type SQLTx struct {
	Ctx     context.Context
	Q       Querier
	Dialect *Dialect
	// Changed collects the VMs whose revision this transaction bumps at
	// commit, and Events the activity events it appends then; the
	// Batcher writes both for a whole batch at once (see flush).
	Changed []string
	Events  []*jit.Event
}

func (t *SQLTx) rebind(q string) string {
	if !t.Dialect.Numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (t *SQLTx) exec(q string, args ...any) (int64, error) {
	n, err := t.Q.Exec(t.Ctx, t.rebind(q), args...)
	if err != nil {
		return 0, t.dbErr(err)
	}
	return n, nil
}

// write runs a write whose result nobody reads. On a pipelined Conn it
// waits for the connection's next round trip and travels with it; a
// failure comes back from that round trip (at the latest when the update
// ends, from Update).
func (t *SQLTx) write(q string, args ...any) error {
	if c, ok := t.Q.(*Conn); ok && c.pipelined {
		c.Defer(t.rebind(q), args...)
		return nil
	}
	_, err := t.exec(q, args...)
	return err
}

func (t *SQLTx) query(q string, args ...any) (Rows, error) {
	r, err := t.Q.Query(t.Ctx, t.rebind(q), args...)
	if err != nil {
		return nil, t.dbErr(err)
	}
	return r, nil
}

// scanner is a row to scan.
type scanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// firstRow scans the first row of its rows, or returns sql.ErrNoRows, and
// closes them.
type firstRow struct{ rows Rows }

func (r firstRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// row runs a query for one row; the caller scans it at once.
func (t *SQLTx) row(q string, args ...any) scanner {
	rows, err := t.query(q, args...)
	if err != nil {
		return errRow{err}
	}
	return firstRow{rows}
}

// dbErr classifies a database error of the transaction's connection.
func (t *SQLTx) dbErr(err error) error {
	c, _ := t.Q.(*Conn)
	return t.Dialect.classify(err, c != nil && c.Closed())
}

// errDatabase is the error users see when the database is down.
var errDatabase = jit.Errorf(jit.EUnavailable, "the database is unavailable; try again later")

// classify turns a database error into what Tx promises, keeping the
// database's error inside (errors.As finds it): a uniqueness violation is
// jit.EConflict; an outage (connGone: the connection is known to be lost)
// is jit.EUnavailable; anything else is returned as it is.
func (d *Dialect) classify(err error, connGone bool) error {
	var je *jit.Error
	switch {
	case err == nil || errors.As(err, &je):
		return err
	case d.Conflict != nil:
		if _, ok := d.Conflict(err); ok {
			return fmt.Errorf("%w: %w", jit.Errorf(jit.EConflict, "already exists"), err)
		}
	}
	if connGone || (d.Down != nil && d.Down(err)) {
		return d.unavailable(err)
	}
	return err
}

// unavailable wraps err, an outage, as jit.EUnavailable.
func (d *Dialect) unavailable(err error) error {
	return fmt.Errorf("%w: %w", errDatabase, err)
}

func affected(n int64, what, id string) error {
	if n == 0 {
		return jit.Errorf(jit.ENotFound, "%s %s not found", what, id)
	}
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err)) // only our own plain types get here
	}
	return string(b)
}

// in appends "AND col IN (?, ...)" for a non-nil list; an empty list
// matches nothing.
func in(where []string, args []any, col string, vals []string) ([]string, []any) {
	if vals == nil {
		return where, args
	}
	if len(vals) == 0 {
		return append(where, "1=0"), args
	}
	where = append(where, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
	for _, v := range vals {
		args = append(args, v)
	}
	return where, args
}

func whereClause(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

// Groups.

func (t *SQLTx) CreateGroup(g jit.Group) error {
	_, err := t.exec(`INSERT INTO vm_groups (name, created_at) VALUES (?, ?)`, g.Name, nanos(g.CreatedAt))
	if jit.ErrorCode(err) == jit.EConflict {
		return jit.Errorf(jit.EConflict, "group %s already exists", g.Name)
	}
	return err
}

func (t *SQLTx) GetGroup(name string) (jit.Group, error) {
	var g jit.Group
	var c int64
	err := t.row(`SELECT name, created_at FROM vm_groups WHERE name = ?`, name).Scan(&g.Name, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return g, jit.Errorf(jit.ENotFound, "group %s not found", name)
	}
	g.CreatedAt = fromNanos(c)
	return g, err
}

func (t *SQLTx) ListGroups() ([]jit.Group, error) {
	rows, err := t.query(`SELECT name, created_at FROM vm_groups ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Group
	for rows.Next() {
		var g jit.Group
		var c int64
		if err := rows.Scan(&g.Name, &c); err != nil {
			return nil, err
		}
		g.CreatedAt = fromNanos(c)
		out = append(out, g)
	}
	return out, rows.Err()
}

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

func (t *SQLTx) GetVMAccess(id, user string, targets []GrantTarget) (jit.VM, *jit.Policy, []jit.Grant, error) {
	match := "1=0"
	args := []any{user}
	if len(targets) > 0 {
		match = strings.TrimSuffix(strings.Repeat("(g.port = ? AND g.source = ?) OR ", len(targets)), " OR ")
		for _, gt := range targets {
			args = append(args, gt.Port, gt.Source)
		}
	}
	rows, err := t.query(`SELECT v.id, v.name, v.grp, v.backend, v.os, v.addresses, v.labels, v.external_id, v.created_at, v.revision, v.report,
		p.body, p.updated_at, p.updated_by,
		COALESCE(g.id, ''), COALESCE(g.request_id, ''), COALESCE(g.vm_id, ''), COALESCE(g.vm_name, ''), COALESCE(g.grp, ''),
		COALESCE(g.port, 0), COALESCE(g.protocol, ''), COALESCE(g.source, ''), COALESCE(g.usr, ''), COALESCE(g.start_time, 0),
		COALESCE(g.end_time, 0), COALESCE(g.status, ''), g.ended_at, COALESCE(g.ended_by, '')
		FROM vms v LEFT JOIN policies p ON p.vm_id = v.id
		LEFT JOIN grants g ON g.vm_id = v.id AND g.status = 'active' AND g.usr = ? AND (`+match+`)
		WHERE v.id = ? ORDER BY g.start_time`, append(args, id)...)
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
	if !body.Valid {
		return vm, nil, active, nil
	}
	p, err := decodePolicy(vm.ID, body.String, upd.Int64, by.String)
	return vm, &p, active, err
}

// scanFunc adapts a function to the Scan method scanVM takes.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

func (t *SQLTx) ListVMs(f VMFilter) ([]jit.VM, error) {
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
	case WithPolicy:
		where = append(where, "EXISTS (SELECT 1 FROM policies p WHERE p.vm_id = vms.id)")
	case WithoutPolicy:
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

func (t *SQLTx) VMUsage(vmIDs []string, since, now time.Time) (map[string]VMUsage, error) {
	out := make(map[string]VMUsage, len(vmIDs))
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
			var u VMUsage
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

func (t *SQLTx) ListPolicies(f VMFilter) ([]jit.Policy, error) {
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

// Requests and grants.

func (t *SQLTx) CreateRequest(r jit.Request) error {
	return t.write(`INSERT INTO requests (id, usr, address, justification, created_at, status, grp, state, pending_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.User, r.Address, r.Justification, nanos(r.CreatedAt), requestStatus(r), r.Group, encodeRequestState(r), pendingUntil(r))
}

func (t *SQLTx) ListRequests(f RequestFilter) ([]jit.Request, error) {
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
	order := ` ORDER BY created_at DESC, id`
	if !f.PendingBy.IsZero() {
		where, args = append(where, "status = 'pending' AND pending_until <= ?"), append(args, nanos(f.PendingBy))
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
		grants, err := t.grants(w, a, 0)
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

func (t *SQLTx) grants(where []string, args []any, limit int) ([]jit.Grant, error) {
	q := `SELECT ` + grantCols + ` FROM grants` + whereClause(where) + ` ORDER BY start_time DESC, id` + limitClause(limit)
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

func (t *SQLTx) ListGrants(f GrantFilter) ([]jit.Grant, error) {
	var where []string
	var args []any
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
	return t.grants(where, args, f.Limit)
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
	if err := t.row(`SELECT MIN(end_time) FROM grants WHERE status = 'active'`).Scan(&n); err != nil {
		return time.Time{}, false, err
	}
	if !n.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(n.Int64), true, nil
}

// Users, tokens, role bindings.

func (t *SQLTx) CreateUser(u jit.User, hash string) error {
	_, err := t.exec(`INSERT INTO users (name, created_at, password_hash, origin) VALUES (?, ?, ?, ?)`, u.Name, nanos(u.CreatedAt), hash, u.Origin)
	if jit.ErrorCode(err) == jit.EConflict {
		return &jit.Error{Code: jit.EConflict, Message: fmt.Sprintf("user %s already exists", u.Name), Target: "name"}
	}
	return err
}

func (t *SQLTx) GetUser(name string) (jit.User, string, error) {
	var u jit.User
	var c int64
	var hash string
	err := t.row(`SELECT name, created_at, password_hash, origin FROM users WHERE name = ?`, name).Scan(&u.Name, &c, &hash, &u.Origin)
	if errors.Is(err, sql.ErrNoRows) {
		return u, "", jit.Errorf(jit.ENotFound, "user %s not found", name)
	}
	u.CreatedAt, u.HasPassword = fromNanos(c), hash != ""
	return u, hash, err
}

func (t *SQLTx) ListUsers(f UserFilter) ([]jit.User, error) {
	var where []string
	var args []any
	if f.After != "" {
		where, args = append(where, "name > ?"), append(args, f.After)
	}
	rows, err := t.query(`SELECT name, created_at, password_hash <> '', origin FROM users`+whereClause(where)+` ORDER BY name`+limitClause(f.Limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.User
	for rows.Next() {
		var u jit.User
		var c int64
		if err := rows.Scan(&u.Name, &c, &u.HasPassword, &u.Origin); err != nil {
			return nil, err
		}
		u.CreatedAt = fromNanos(c)
		out = append(out, u)
	}
	return out, rows.Err()
}

func (t *SQLTx) DeleteUser(name string) error {
	for _, q := range []string{`DELETE FROM tokens WHERE usr = ?`, `DELETE FROM role_bindings WHERE usr = ?`} {
		if _, err := t.exec(q, name); err != nil {
			return err
		}
	}
	n, err := t.exec(`DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return err
	}
	return affected(n, "user", name)
}

func (t *SQLTx) SetPasswordHash(name, hash string) error {
	n, err := t.exec(`UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)
	if err != nil {
		return err
	}
	return affected(n, "user", name)
}

const tokenCols = `id, hash, kind, usr, vm_id, grp, name, created_at, expires_at, uses_left`

func scanToken(s scanner) (jit.Token, error) {
	var tk jit.Token
	var hash string
	var created int64
	var exp, uses sql.NullInt64
	if err := s.Scan(&tk.ID, &hash, &tk.Kind, &tk.User, &tk.VMID, &tk.Group, &tk.Name, &created, &exp, &uses); err != nil {
		return tk, err
	}
	tk.Hash = []byte(hash)
	tk.CreatedAt = fromNanos(created)
	if exp.Valid {
		e := fromNanos(exp.Int64)
		tk.ExpiresAt = &e
	}
	if uses.Valid {
		n := int(uses.Int64)
		tk.UsesLeft = &n
	}
	return tk, nil
}

func (t *SQLTx) CreateToken(tk jit.Token) error {
	var uses any
	if tk.UsesLeft != nil {
		uses = *tk.UsesLeft
	}
	_, err := t.exec(`INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tk.ID, string(tk.Hash), tk.Kind, tk.User, tk.VMID, tk.Group, tk.Name, nanos(tk.CreatedAt), nullNanos(tk.ExpiresAt), uses)
	return err
}

func (t *SQLTx) TokenByHash(h []byte) (jit.Token, error) {
	tk, err := scanToken(t.row(`SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, string(h)))
	if errors.Is(err, sql.ErrNoRows) {
		return tk, jit.Errorf(jit.ENotFound, "token not found")
	}
	return tk, err
}

func (t *SQLTx) ListTokens(f TokenFilter) ([]jit.Token, error) {
	var where []string
	var args []any
	if f.User != "" {
		where, args = append(where, "usr = ?"), append(args, f.User)
	}
	if !f.AfterCreated.IsZero() {
		where = append(where, "(created_at > ? OR (created_at = ? AND id > ?))")
		args = append(args, nanos(f.AfterCreated), nanos(f.AfterCreated), f.AfterID)
	}
	rows, err := t.query(`SELECT `+tokenCols+` FROM tokens`+whereClause(where)+` ORDER BY created_at, id`+limitClause(f.Limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Token
	for rows.Next() {
		tk, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, tk)
	}
	return out, rows.Err()
}

func (t *SQLTx) DeleteToken(id string) error {
	n, err := t.exec(`DELETE FROM tokens WHERE id = ?`, id)
	if err != nil {
		return err
	}
	return affected(n, "token", id)
}

func (t *SQLTx) UseToken(id string) error {
	n, err := t.exec(`UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ? AND (uses_left IS NULL OR uses_left > 0)`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return jit.Errorf(jit.EForbidden, "token %s has no uses left", id)
	}
	return nil
}

func (t *SQLTx) CreateRoleBinding(b jit.RoleBinding) error {
	_, err := t.exec(`INSERT INTO role_bindings (id, usr, role, grp, created_at) VALUES (?, ?, ?, ?, ?)`,
		b.ID, b.User, b.Role, b.Group, nanos(b.CreatedAt))
	if jit.ErrorCode(err) == jit.EConflict {
		return jit.Errorf(jit.EConflict, "user %s already has role %s in group %s", b.User, b.Role, b.Group)
	}
	return err
}

func (t *SQLTx) ListRoleBindings(user string) ([]jit.RoleBinding, error) {
	q, args := `SELECT id, usr, role, grp, created_at FROM role_bindings`, []any{}
	if user != "" {
		q += ` WHERE usr = ?`
		args = append(args, user)
	}
	rows, err := t.query(q+` ORDER BY usr, grp, role`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.RoleBinding
	for rows.Next() {
		var b jit.RoleBinding
		var c int64
		if err := rows.Scan(&b.ID, &b.User, &b.Role, &b.Group, &c); err != nil {
			return nil, err
		}
		b.CreatedAt = fromNanos(c)
		out = append(out, b)
	}
	return out, rows.Err()
}

func (t *SQLTx) DeleteRoleBinding(id string) error {
	n, err := t.exec(`DELETE FROM role_bindings WHERE id = ?`, id)
	if err != nil {
		return err
	}
	return affected(n, "role binding", id)
}

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
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	*head = ChainHead{Seq: seq.Int64, Hash: prev.String, Known: true}
	return nil
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

func (t *SQLTx) ListEvents(f EventFilter) ([]jit.Event, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"vm_id", f.VMID}, {"actor", f.Actor}, {"operation", f.Operation}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
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
