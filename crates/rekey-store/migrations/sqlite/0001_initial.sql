-- Rekey schema, SQLite flavour. Kept in step with ../postgres/0001_initial.sql: same tables,
-- columns, keys and constraint names; only the column types differ (STRICT tables
-- with INTEGER for booleans and BLOB for bytes here; BOOLEAN, BYTEA and BIGINT there).
--
-- Conventions (see DESIGN.md 11): every tenant table's primary key begins with tenant_id;
-- instance-wide lookups go through the small global tables user_index, email_index and
-- api_tokens. Every timestamp is INTEGER microseconds since the Unix epoch and always comes from
-- the caller's clock (no SQL time functions anywhere).

-- Small and read-mostly: a reference table when sharded, so UNIQUE(cname) stays enforceable.
CREATE TABLE tenants (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    cname         TEXT    NOT NULL,
    settings      TEXT    NOT NULL, -- JSON of TenantSettings
    creation_date INTEGER NOT NULL,
    change_date   INTEGER NOT NULL,
    CONSTRAINT tenants_cname_key UNIQUE (cname)
) STRICT;

CREATE TABLE users (
    tenant_id                TEXT    NOT NULL REFERENCES tenants (id),
    id                       TEXT    NOT NULL,
    username                 TEXT    NOT NULL,
    email                    TEXT    NOT NULL,
    email_lower              TEXT    NOT NULL,
    email_verified           INTEGER NOT NULL,
    phone                    TEXT,
    phone_verified           INTEGER NOT NULL,
    first_name               TEXT    NOT NULL,
    last_name                TEXT    NOT NULL,
    display_name             TEXT    NOT NULL,
    preferred_language       TEXT    NOT NULL,
    state                    TEXT    NOT NULL
        CHECK (state IN ('initial', 'active', 'inactive', 'locked', 'deleted')),
    password_hash            TEXT,
    password_change_required INTEGER NOT NULL,
    sequence                 INTEGER NOT NULL,
    creation_date            INTEGER NOT NULL,
    change_date              INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_email_key UNIQUE (tenant_id, email_lower)
) STRICT;

-- Global: which tenant a user id belongs to (user ids are unique instance-wide).
CREATE TABLE user_index (
    user_id   TEXT NOT NULL PRIMARY KEY,
    tenant_id TEXT NOT NULL
) STRICT;

-- Global: which tenants have a user with this (lower-cased) email.
CREATE TABLE email_index (
    email_lower TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    PRIMARY KEY (email_lower, tenant_id)
) STRICT;

-- Global: looked up by the SHA-256 of the presented secret.
CREATE TABLE api_tokens (
    token_hash BLOB    NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    tenant_id  TEXT,
    user_id    TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CONSTRAINT api_tokens_id_key UNIQUE (id),
    CONSTRAINT api_tokens_role_check CHECK (
        (role = 'system' AND tenant_id IS NULL AND user_id IS NULL)
        OR (role = 'tenant_admin' AND tenant_id IS NOT NULL AND user_id IS NULL)
        OR (role = 'user' AND tenant_id IS NOT NULL AND user_id IS NOT NULL)
    )
) STRICT;
CREATE INDEX api_tokens_user ON api_tokens (tenant_id, user_id);

-- Only the keyed MAC of a code is stored. A code is pending while used_at IS NULL; it leaves
-- that state exactly once, as 'used' or 'voided'.
CREATE TABLE reset_codes (
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    mac        BLOB    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('reset', 'init')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    used_at    INTEGER,
    outcome    TEXT CHECK (outcome IN ('used', 'voided')),
    PRIMARY KEY (tenant_id, user_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    CONSTRAINT reset_codes_used_has_outcome CHECK ((used_at IS NULL) = (outcome IS NULL))
) STRICT;
-- Only the latest code is valid: at most one pending code per user.
CREATE UNIQUE INDEX reset_codes_one_pending ON reset_codes (tenant_id, user_id)
    WHERE used_at IS NULL;

-- Append-only audit trail; sequence counts the aggregate's (user's or tenant's) events.
CREATE TABLE events (
    tenant_id    TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    ip           TEXT,
    at           INTEGER NOT NULL,
    payload      TEXT    NOT NULL, -- JSON, never a secret
    PRIMARY KEY (tenant_id, aggregate_id, sequence)
) STRICT;
CREATE INDEX events_at ON events (at);

CREATE TABLE outbox (
    tenant_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       TEXT,
    kind            TEXT    NOT NULL
        CHECK (kind IN ('password_reset', 'password_init', 'password_changed')),
    idempotency_key TEXT    NOT NULL,
    key_id          TEXT    NOT NULL,
    body            BLOB    NOT NULL, -- AEAD nonce || ciphertext; empty once delivered
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    -- Unique per tenant (keys are random); a global UNIQUE could not be enforced when sharded.
    CONSTRAINT outbox_idempotency_key UNIQUE (tenant_id, idempotency_key)
) STRICT;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_created ON outbox (created_at);

-- Global fixed-window counters, keyed by the input (never by whether an account exists).
CREATE TABLE rate_limits (
    key          TEXT    NOT NULL PRIMARY KEY,
    window_start INTEGER NOT NULL, -- seconds since the Unix epoch, a multiple of the window
    count        INTEGER NOT NULL
) STRICT;
