package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Webhooks (jit.Webhook) and their outbox of deliveries (jit.Delivery).

const webhookCols = `id, url, format, kinds, grps, secret, created_at, created_by, cursor_seq`

func (t *SQLTx) CreateWebhook(w jit.Webhook) error {
	_, err := t.exec(`INSERT INTO webhooks (`+webhookCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		w.ID, w.URL, w.Format, toJSON(nonNil(w.Events)), toJSON(nonNil(w.Groups)), w.Secret, nanos(w.CreatedAt), w.CreatedBy, w.Cursor)
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func scanWebhook(s scanner) (jit.Webhook, error) {
	var w jit.Webhook
	var kinds, groups string
	var created int64
	if err := s.Scan(&w.ID, &w.URL, &w.Format, &kinds, &groups, &w.Secret, &created, &w.CreatedBy, &w.Cursor); err != nil {
		return w, err
	}
	w.CreatedAt = fromNanos(created)
	if err := json.Unmarshal([]byte(kinds), &w.Events); err != nil {
		return w, err
	}
	return w, json.Unmarshal([]byte(groups), &w.Groups)
}

func (t *SQLTx) GetWebhook(id string) (jit.Webhook, error) {
	w, err := scanWebhook(t.row(`SELECT `+webhookCols+` FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, jit.Errorf(jit.ENotFound, "webhook %s not found", id)
	}
	return w, err
}

func (t *SQLTx) ListWebhooks() ([]jit.Webhook, error) {
	rows, err := t.query(`SELECT ` + webhookCols + ` FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

func (t *SQLTx) DeleteWebhook(id string) error {
	n, err := t.exec(`DELETE FROM webhooks WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return jit.Errorf(jit.ENotFound, "webhook %s not found", id)
	}
	return t.write(`DELETE FROM webhook_deliveries WHERE webhook_id = ?`, id)
}

func (t *SQLTx) QueueDeliveries(webhookID string, from, to int64, ds []jit.Delivery) (bool, error) {
	n, err := t.exec(`UPDATE webhooks SET cursor_seq = ? WHERE id = ? AND cursor_seq = ?`, to, webhookID, from)
	if err != nil || n != 1 {
		return false, err
	}
	for len(ds) > 0 {
		chunk := ds[:min(len(ds), 100)]
		ds = ds[len(chunk):]
		row := "(?, ?, ?, ?, ?, '', 0, ?, ?)"
		args := make([]any, 0, 7*len(chunk))
		for _, d := range chunk {
			args = append(args, webhookID, d.Seq, d.Kind, jit.DeliveryPending, d.Attempts, nanos(d.NextAttempt), nanos(d.CreatedAt))
		}
		q := `INSERT INTO webhook_deliveries (webhook_id, seq, kind, status, attempts, last_error, last_code, next_attempt, created_at) VALUES ` +
			row + strings.Repeat(", "+row, len(chunk)-1)
		if err := t.write(q, args...); err != nil {
			return false, err
		}
	}
	return true, nil
}

const deliveryCols = `webhook_id, seq, kind, status, attempts, last_error, last_code, next_attempt, created_at, delivered_at`

func (t *SQLTx) ListDeliveries(f store.DeliveryFilter) ([]jit.Delivery, error) {
	var where []string
	var args []any
	order := ` ORDER BY seq DESC`
	if f.WebhookID != "" {
		where, args = append(where, "webhook_id = ?"), append(args, f.WebhookID)
	}
	if f.BeforeSeq > 0 {
		where, args = append(where, "seq < ?"), append(args, f.BeforeSeq)
	}
	if !f.DueBy.IsZero() {
		where, args = append(where, "status = 'pending'", "next_attempt <= ?"), append(args, nanos(f.DueBy))
		order = ` ORDER BY next_attempt, webhook_id, seq`
	}
	rows, err := t.query(`SELECT `+deliveryCols+` FROM webhook_deliveries`+whereClause(where)+order+limitClause(f.Limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jit.Delivery
	for rows.Next() {
		var d jit.Delivery
		var next, created int64
		var delivered sql.NullInt64
		if err := rows.Scan(&d.WebhookID, &d.Seq, &d.Kind, &d.Status, &d.Attempts, &d.LastError, &d.LastStatusCode, &next, &created, &delivered); err != nil {
			return nil, err
		}
		d.NextAttempt, d.CreatedAt = fromNanos(next), fromNanos(created)
		if delivered.Valid {
			at := fromNanos(delivered.Int64)
			d.DeliveredAt = &at
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *SQLTx) SetDelivery(d jit.Delivery, attempts int) (bool, error) {
	n, err := t.exec(`UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?, last_code = ?, next_attempt = ?, delivered_at = ?
		WHERE webhook_id = ? AND seq = ? AND status = 'pending' AND attempts = ?`,
		d.Status, d.Attempts, d.LastError, d.LastStatusCode, nanos(d.NextAttempt), nullNanos(d.DeliveredAt), d.WebhookID, d.Seq, attempts)
	return n == 1, err
}

func (t *SQLTx) NextDeliveryDue() (time.Time, bool, error) {
	var n sql.NullInt64
	if err := t.row(`SELECT MIN(next_attempt) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&n); err != nil {
		return time.Time{}, false, err
	}
	if !n.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(n.Int64), true, nil
}
