package sqlstore

import (
	"database/sql"
	"errors"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

func (t *SQLTx) PutRequestKey(user, key, bodyHash, requestID string, at time.Time) error {
	_, err := t.exec(`INSERT INTO request_keys (usr, idem_key, body_hash, request_id, created_at) VALUES (?, ?, ?, ?, ?)`, user, key, bodyHash, requestID, nanos(at))
	if jit.ErrorCode(err) == jit.EConflict {
		return &jit.Error{Code: jit.EConflict, Target: "Idempotency-Key", Message: "Idempotency-Key " + key + " is already used by another request"}
	}
	return err
}

func (t *SQLTx) GetRequestKey(user, key string) (string, string, error) {
	var hash, id string
	err := t.row(`SELECT body_hash, request_id FROM request_keys WHERE usr = ? AND idem_key = ?`, user, key).Scan(&hash, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", jit.Errorf(jit.ENotFound, "Idempotency-Key %s not used", key)
	}
	return hash, id, err
}
