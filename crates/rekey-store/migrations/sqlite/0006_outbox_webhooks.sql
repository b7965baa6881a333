-- Event webhooks (SPEC §10, §12). Kept in step with ../postgres/0006_outbox_webhooks.sql.
--
-- The outbox carries the signed events for the configured webhook URLs: channel 'webhook'
-- (the recipient is the receiver's URL) and kind 'event' (the sealed body is the event's JSON).
--
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt the documented way
-- (https://www.sqlite.org/lang_altertable.html#otheralter): create the new table, copy every
-- row, drop the old one, rename the new one, recreate the indexes. Switching foreign keys off
-- (steps 1 and 12) is not needed and not possible here (the migration runs in a transaction):
-- no table references outbox, and the copied rows keep satisfying outbox's own reference to
-- users. Columns, their order, the key and the constraint names stay as they were.
CREATE TABLE outbox_new (
    tenant_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    recipient       TEXT,
    kind            TEXT    NOT NULL
        CHECK (kind IN ('password_reset', 'password_init', 'password_changed', 'event')),
    idempotency_key TEXT    NOT NULL,
    key_id          TEXT    NOT NULL,
    body            BLOB    NOT NULL, -- AEAD nonce || ciphertext; empty once delivered
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    body_expires_at INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    -- Unique per tenant (keys are random); a global UNIQUE could not be enforced when sharded.
    CONSTRAINT outbox_idempotency_key UNIQUE (tenant_id, idempotency_key)
) STRICT;

INSERT INTO outbox_new (tenant_id, id, user_id, channel, recipient, kind, idempotency_key,
    key_id, body, state, attempts, next_attempt_at, last_error, created_at, sent_at,
    body_expires_at)
SELECT tenant_id, id, user_id, channel, recipient, kind, idempotency_key,
    key_id, body, state, attempts, next_attempt_at, last_error, created_at, sent_at,
    body_expires_at
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- The indexes of 0001 and 0002, as they were (outbox_due was replaced in 0002).
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX outbox_id ON outbox (id);
CREATE INDEX outbox_pending_due ON outbox (next_attempt_at) WHERE state = 'pending';
