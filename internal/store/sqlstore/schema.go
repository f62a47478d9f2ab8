package sqlstore

import "fmt"

// NewerSchema is the error of a server that finds the database at schema
// version have, newer than the know versions it knows: a newer ajard
// migrated it, and this one would misread it.
func NewerSchema(have, know int) error {
	return fmt.Errorf("the database's schema is version %d, newer than this ajard's (version %d): a newer ajard upgraded it; run that version (upgrade every replica) instead", have, know)
}

// Migrations is the schema, one step per entry, shared by every SQL adapter.
// Steps are only ever appended. Times are Unix nanoseconds; lists and maps
// are JSON text; the SQL is the subset SQLite and PostgreSQL share.
var Migrations = []string{
	`CREATE TABLE vm_groups (
		name TEXT PRIMARY KEY,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE vms (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		grp TEXT NOT NULL REFERENCES vm_groups (name),
		backend TEXT NOT NULL,
		os TEXT NOT NULL,
		addresses TEXT NOT NULL,
		labels TEXT NOT NULL,
		external_id TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		revision BIGINT NOT NULL,
		report TEXT,
		UNIQUE (grp, name)
	);
	CREATE UNIQUE INDEX vms_external_id ON vms (backend, lower(external_id)) WHERE external_id <> '';
	CREATE TABLE policies (
		vm_id TEXT PRIMARY KEY REFERENCES vms (id),
		body TEXT NOT NULL,
		updated_at BIGINT NOT NULL,
		updated_by TEXT NOT NULL
	);
	CREATE TABLE requests (
		id TEXT PRIMARY KEY,
		usr TEXT NOT NULL,
		address TEXT NOT NULL,
		justification TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX requests_user ON requests (usr, created_at);
	CREATE INDEX requests_created ON requests (created_at);
	CREATE TABLE grants (
		id TEXT PRIMARY KEY,
		request_id TEXT NOT NULL,
		vm_id TEXT NOT NULL,
		vm_name TEXT NOT NULL,
		grp TEXT NOT NULL,
		port INTEGER NOT NULL,
		protocol TEXT NOT NULL,
		source TEXT NOT NULL,
		usr TEXT NOT NULL,
		start_time BIGINT NOT NULL,
		end_time BIGINT NOT NULL,
		status TEXT NOT NULL,
		ended_at BIGINT,
		ended_by TEXT NOT NULL
	);
	CREATE INDEX grants_active_end ON grants (end_time) WHERE status = 'active';
	CREATE INDEX grants_vm ON grants (vm_id, status);
	CREATE INDEX grants_active_vm_port ON grants (vm_id, port, source) WHERE status = 'active';
	CREATE INDEX grants_request ON grants (request_id);
	CREATE INDEX grants_start ON grants (start_time);
	CREATE TABLE users (
		name TEXT PRIMARY KEY,
		created_at BIGINT NOT NULL,
		password_hash TEXT NOT NULL
	);
	CREATE TABLE tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		kind TEXT NOT NULL,
		usr TEXT NOT NULL,
		vm_id TEXT NOT NULL,
		grp TEXT NOT NULL,
		name TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT,
		uses_left INTEGER
	);
	CREATE TABLE role_bindings (
		id TEXT PRIMARY KEY,
		usr TEXT NOT NULL,
		role TEXT NOT NULL,
		grp TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		UNIQUE (usr, role, grp)
	);
	CREATE TABLE events (
		seq BIGINT PRIMARY KEY,
		time BIGINT NOT NULL,
		actor TEXT NOT NULL,
		actor_address TEXT NOT NULL,
		vm_id TEXT NOT NULL,
		grp TEXT NOT NULL,
		operation TEXT NOT NULL,
		outcome TEXT NOT NULL,
		details TEXT NOT NULL,
		prev_hash TEXT NOT NULL,
		hash TEXT NOT NULL
	);
	CREATE INDEX events_vm ON events (vm_id, seq);
	CREATE INDEX events_time ON events (time);`,
	// Lists page by these keys, and a VM's usage figures (requests in 7
	// days, last access and user) are index ranges of its grants.
	`CREATE INDEX grants_vm_start ON grants (vm_id, start_time);
	CREATE INDEX grants_user_start ON grants (usr, start_time);`,
	// The list of grants in one state, newest first, is an index range too
	// (with 100,000 active grants, sorting them took 240 ms a page).
	`CREATE INDEX grants_status_start ON grants (status, start_time);`,
	// A user provisioned at their first sign-in through an OpenID
	// provider keeps ISSUER#SUBJECT; local users have none.
	`ALTER TABLE users ADD COLUMN origin TEXT NOT NULL DEFAULT ''`,
	// Roles given by a claim of an OpenID provider's users.
	`CREATE TABLE claim_mappings (
		id TEXT PRIMARY KEY,
		claim TEXT NOT NULL,
		value TEXT NOT NULL,
		role TEXT NOT NULL,
		grp TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		UNIQUE (claim, value, role, grp)
	)`,
	// Requests may wait for approval: their state, the group they ask in,
	// the rest of what an approval needs (JSON) and until when they wait.
	`ALTER TABLE requests ADD COLUMN status TEXT NOT NULL DEFAULT 'approved';
	ALTER TABLE requests ADD COLUMN grp TEXT NOT NULL DEFAULT '';
	ALTER TABLE requests ADD COLUMN state TEXT NOT NULL DEFAULT '';
	ALTER TABLE requests ADD COLUMN pending_until BIGINT;
	CREATE INDEX requests_pending ON requests (pending_until) WHERE status = 'pending';
	CREATE INDEX requests_status_created ON requests (status, created_at);`,
	// A VM's grants in one state, newest first (its active grants: the
	// agent's desired state, the checks of a request). Without it SQLite
	// answered those from grants_status_start, reading every active grant
	// of every VM (requests/s fell 2.5x as active grants piled up).
	`DROP INDEX grants_vm;
	CREATE INDEX grants_vm_status_start ON grants (vm_id, status, start_time);`,
	// Events archived out of the activity log (ajar log archive): each
	// run keeps the last archived event's sequence number and hash, which
	// the first event left in the log links to.
	`CREATE TABLE log_checkpoints (
		seq BIGINT PRIMARY KEY,
		hash TEXT NOT NULL,
		archived_at BIGINT NOT NULL,
		archived_by TEXT NOT NULL
	)`,
	// Webhooks and their outbox: cursor_seq is the last activity event
	// queued for the webhook; each queued event is a delivery, pending
	// until a 2xx answer or until its attempts run out.
	`CREATE TABLE webhooks (
		id TEXT PRIMARY KEY,
		url TEXT NOT NULL,
		format TEXT NOT NULL,
		kinds TEXT NOT NULL,
		grps TEXT NOT NULL,
		secret TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL,
		cursor_seq BIGINT NOT NULL
	);
	CREATE TABLE webhook_deliveries (
		webhook_id TEXT NOT NULL,
		seq BIGINT NOT NULL,
		kind TEXT NOT NULL,
		status TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		last_error TEXT NOT NULL,
		last_code INTEGER NOT NULL,
		next_attempt BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		delivered_at BIGINT,
		PRIMARY KEY (webhook_id, seq)
	);
	CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt) WHERE status = 'pending';
	CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, next_attempt, seq) WHERE status = 'pending';`,
	// An access request's Idempotency-Key, per user: a retry with the same
	// key gets the request it made (its body's hash must match), also after
	// a restart.
	`CREATE TABLE request_keys (
		usr TEXT NOT NULL,
		idem_key TEXT NOT NULL,
		body_hash TEXT NOT NULL,
		request_id TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (usr, idem_key)
	)`,
	// A user's active grants (their "My access" page, `ajar grant ls`), newest
	// first, from an index of active grants only: without it SQLite read
	// every active grant of every user to find one user's.
	`CREATE INDEX grants_active_user ON grants (usr, start_time) WHERE status = 'active'`,
}
