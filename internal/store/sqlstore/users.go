package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

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

func (t *SQLTx) ListUsers(f store.UserFilter) ([]jit.User, error) {
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
	t.AuthChanged = true
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

func (t *SQLTx) ListTokens(f store.TokenFilter) ([]jit.Token, error) {
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
	t.AuthChanged = true
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
	t.AuthChanged = true
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
	t.AuthChanged = true
	n, err := t.exec(`DELETE FROM role_bindings WHERE id = ?`, id)
	if err != nil {
		return err
	}
	return affected(n, "role binding", id)
}
