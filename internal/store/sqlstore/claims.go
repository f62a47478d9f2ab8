package sqlstore

import (
	"github.com/ajarhq/ajar/internal/jit"
)

// Claim mappings (jit.ClaimMapping).

func (t *SQLTx) CreateClaimMapping(m jit.ClaimMapping) error {
	_, err := t.exec(`INSERT INTO claim_mappings (id, claim, value, role, grp, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		m.ID, m.Claim, m.Value, m.Role, m.Group, nanos(m.CreatedAt))
	if jit.ErrorCode(err) == jit.EConflict {
		return jit.Errorf(jit.EConflict, "claim %s=%s already maps to role %s in group %s", m.Claim, m.Value, m.Role, m.Group)
	}
	return err
}

func (t *SQLTx) ListClaimMappings() ([]jit.ClaimMapping, error) {
	rows, err := t.query(`SELECT id, claim, value, role, grp, created_at FROM claim_mappings ORDER BY claim, value, grp, role`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.ClaimMapping
	for rows.Next() {
		var m jit.ClaimMapping
		var c int64
		if err := rows.Scan(&m.ID, &m.Claim, &m.Value, &m.Role, &m.Group, &c); err != nil {
			return nil, err
		}
		m.CreatedAt = fromNanos(c)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t *SQLTx) DeleteClaimMapping(id string) error {
	n, err := t.exec(`DELETE FROM claim_mappings WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return jit.Errorf(jit.ENotFound, "claim mapping %s not found", id)
	}
	return nil
}
