package sqlstore

import (
	"database/sql"
	"errors"

	"github.com/ajarhq/ajar/internal/jit"
)

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
