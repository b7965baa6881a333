//! The transaction of a [`UserChange`]: every write of one flow step for one user, sent to the
//! database as **one** statement text — on SQLite with its own `BEGIN IMMEDIATE` and `COMMIT`
//! (one call of the writer's thread), on PostgreSQL alone when it guards itself, else between
//! `BEGIN` and `COMMIT`.
//!
//! A change used to be up to ten round trips (state read, rate limit, consume, void, insert
//! code, update user, revoke, event, messages, each awaited in turn while SQLite's one writer
//! — or the PostgreSQL row lock — was held). Now the writes are assembled into a [`Batch`] of
//! steps over shared `$n` parameters and sent at once:
//! - SQLite runs a text of several statements in one call of its connection thread, in order,
//!   binding each `$n` by number;
//! - PostgreSQL takes one statement per call, so the steps become data-modifying CTEs of one
//!   `WITH … SELECT`, whose order is forced where it matters (the new code after the void).
//!
//! Every step that must happen only when the user's state allows it reads the *guard*: the
//! guarded `UPDATE users … RETURNING sequence` on PostgreSQL (`u`), the user's row after that
//! update on SQLite. The steps that return something (`seq` from the guarded update, `hits`
//! from the rate-limit counter, `consumed` from the code) return `(k, v)` rows; from them the
//! caller decides, in the order [`UserChange`] documents, to commit or to roll everything back.

use rekey_core::domain::{erased_email, UserState};
use rekey_core::ports::store::{StoreError, UserChange};

use super::backend::{On, SqlBackend, Stmt};
use super::rate_limits::count_hit_sql;
use super::rows::OUTBOX_COLUMNS;
use super::BatchForm;
use super::SqlStore;
use crate::codec::{json_text, micros, parse};
use crate::error::{corrupt, db_error, is_unique_violation, violation_mentions};

impl<DB: SqlBackend> SqlStore<DB> {
    /// The body of `change_user`: the change as one batch, in a write transaction or, where
    /// the batch is its own guard ([`Batch::commits_alone`]), as one statement. The new
    /// sequence.
    pub(super) async fn write_change(&self, change: &UserChange) -> Result<i64, StoreError> {
        const OP: &str = "change user";
        let form = self.dialect.batch;
        if form == BatchForm::Statements {
            if let Some(sequence) = self.write_in_one_call(change).await? {
                return Ok(sequence);
            }
        }
        let batch = Batch::of(change, form, false)?;
        let sql = batch.sql(form);
        if batch.commits_alone(form) {
            match Self::run_batch(&sql, batch, &self.writer).await {
                Ok(Outcome {
                    sequence: Some(sequence),
                    ..
                }) => return Ok(sequence),
                Ok(_) => return Err(Self::why_not_changed(&self.writer, change).await),
                // The statement's snapshot predates a code another change committed while
                // this one waited for the user's row, so its void missed that code and the
                // new one met it in the one-pending index. Nothing was written: do it again
                // the locking way, which cannot lose this race.
                Err(StoreError::Conflict(PENDING_CODE)) => {}
                Err(err) => return Err(err),
            }
        }
        let batch = Batch::of(change, form, false)?;
        let mut tx = self.begin_write(OP).await?;
        let result = self.lock_and_run(&mut tx, &sql, batch, change).await;
        Self::finish(OP, tx, result).await
    }

    /// SQLite: the whole change — `BEGIN IMMEDIATE`, the steps, the checks, `COMMIT` — as one
    /// call of the writer connection's thread. Each call is a hand-off between threads; the
    /// writer, SQLite's one, is the bottleneck, and three calls per change (begin, batch,
    /// commit) kept it waiting for the caller between them while it held the write lock.
    ///
    /// The checks the caller would make after the batch ([`Outcome::check`], the guard) are
    /// made inside it: each inserts a row that violates `change_guard`'s CHECK when its
    /// condition fails, which stops the call before its `COMMIT`. Every failure is rolled back;
    /// a failed check is answered `None`, and the caller runs the change the transactional way,
    /// which names the refusal exactly (refusals are the rare path); any other error is the
    /// change's error. It runs in a task of its own, so a caller that goes away cannot leave
    /// the connection inside the transaction.
    async fn write_in_one_call(&self, change: &UserChange) -> Result<Option<i64>, StoreError> {
        const OP: &str = "change user";
        let batch = Batch::of(change, BatchForm::Statements, true)?;
        let sql = batch.sql(BatchForm::Statements);
        let writer = self.writer.clone();
        let call = tokio::spawn(async move {
            let mut conn = writer.acquire().await?;
            let rows = batch.bind(Self::query(&sql)).fetch_all(&mut *conn).await;
            if rows.is_err() {
                // Still inside the transaction unless BEGIN itself failed (then this fails
                // with "no transaction is active", harmlessly). A connection that cannot
                // roll back is closed, which ends its transaction.
                if let Err(err) = Self::query("ROLLBACK").execute(&mut *conn).await {
                    if !err.to_string().contains("no transaction is active") {
                        tracing::warn!(op = OP, error = %err, "rollback failed; closing");
                        conn.close().await?;
                    }
                }
            }
            rows
        });
        let rows = match call.await {
            Ok(Ok(rows)) => rows,
            // A check stopped it: the transactional way names the refusal.
            Ok(Err(err)) if violation_mentions(&err, "change_guard") => return Ok(None),
            // Anything else (the write lock not granted within the busy timeout, a conflict)
            // would fail the same way again: answer it now.
            Ok(Err(err)) => return Err(change_error(err)),
            Err(err) => {
                tracing::error!(op = OP, error = %err, "change task failed");
                return Err(StoreError::Unavailable);
            }
        };
        Ok(Self::outcome(&rows)?.sequence)
    }

    /// The batch inside a write transaction. PostgreSQL first locks the user's row in a
    /// statement of its own, so that the batch — whose steps all read one snapshot, taken when
    /// it starts — sees every change committed before the lock was granted (READ COMMITTED
    /// takes a new snapshot per statement); SQLite's write transaction already excludes every
    /// other writer.
    async fn lock_and_run(
        &self,
        tx: &mut DB::Connection,
        sql: &str,
        batch: Batch,
        change: &UserChange,
    ) -> Result<i64, StoreError> {
        if let Some(lock) = self.dialect.lock_user {
            Self::query(lock)
                .bind(change.tenant_id.as_str().to_owned())
                .bind(change.user_id.as_str().to_owned())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error("change user: lock", e))?;
        }
        let outcome = Self::run_batch(sql, batch, &mut *tx).await?;
        match outcome.sequence {
            Some(sequence) => outcome.check(change).map(|()| sequence),
            None => Err(Self::why_not_changed(&mut *tx, change).await),
        }
    }

    /// Sends the batch and reads what its steps returned.
    async fn run_batch<'q: 'e, 'e>(
        sql: &'q str,
        batch: Batch,
        on: impl Into<On<'e, DB>>,
    ) -> Result<Outcome, StoreError> {
        let rows = batch
            .bind(Self::query(sql))
            .fetch_all(on)
            .await
            .map_err(change_error)?;
        Self::outcome(&rows)
    }

    /// What the steps of a batch returned, from its `(k, v)` rows.
    fn outcome(rows: &[DB::Row]) -> Result<Outcome, StoreError> {
        const OP: &str = "change user";
        let mut outcome = Outcome::default();
        for row in rows {
            let k: String = Self::get(row, "k")?;
            let v: i64 = Self::get(row, "v")?;
            match k.as_str() {
                "seq" => outcome.sequence = Some(v),
                "hits" => outcome.hits = Some(v),
                "consumed" => outcome.consumed = true,
                "voided" => {}
                _ => return Err(corrupt(format!("{OP}: unexpected result {k}"))),
            }
        }
        Ok(outcome)
    }

    /// Why the guarded update changed no row: the user is gone (or deleted, when any live
    /// state would do), or in a state the change does not apply to.
    async fn why_not_changed<'e>(on: impl Into<On<'e, DB>>, change: &UserChange) -> StoreError {
        const OP: &str = "change user: read state";
        let row = Self::query("SELECT state FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(change.tenant_id.as_str().to_owned())
            .bind(change.user_id.as_str().to_owned())
            .fetch_optional(on)
            .await;
        let state = match row {
            Ok(Some(row)) => match Self::get::<String>(&row, "state")
                .and_then(|s| parse::<UserState>("users.state", &s))
            {
                Ok(state) => state,
                Err(err) => return err,
            },
            Ok(None) => return StoreError::NotFound,
            Err(err) => return db_error(OP, err),
        };
        if change.require_state.is_empty() && state == UserState::Deleted {
            StoreError::NotFound
        } else if change.require_state.is_empty() || !change.require_state.contains(&state) {
            StoreError::StateConflict(state)
        } else {
            // The state allows the change, yet the guard matched nothing: not a race the
            // transaction can lose (it holds the write lock / the row), so a bug.
            corrupt(format!("{OP}: user in an allowed state was not updated"))
        }
    }
}

/// What a batch's steps returned.
#[derive(Debug, Default)]
struct Outcome {
    /// The new sequence; `None` when the guard failed.
    sequence: Option<i64>,
    /// The rate-limit counter after this hit.
    hits: Option<i64>,
    /// Whether the code to consume was still pending (and now is used).
    consumed: bool,
}

impl Outcome {
    /// The checks after the guard, in the order [`UserChange`] documents: the rate limit,
    /// then the code. A failure rolls the transaction back, so a refused hit is not counted.
    fn check(&self, change: &UserChange) -> Result<(), StoreError> {
        if let (Some(hit), Some(hits)) = (&change.rate_limit, self.hits) {
            if hits > i64::from(hit.limit) {
                return Err(StoreError::RateLimited {
                    retry_after_secs: hit.retry_after(),
                });
            }
        }
        if change.consume_code.is_some() && !self.consumed {
            return Err(StoreError::CodeGone);
        }
        Ok(())
    }
}

/// The conflict of a second pending code for one user (PostgreSQL's index name; on SQLite,
/// whose writes are serial, it cannot happen).
const PENDING_CODE: &str = "pending code";

/// A failed batch: a unique violation is a conflict on what the constraint guards (PostgreSQL
/// names the constraint, SQLite the table and columns), anything else the general mapping.
fn change_error(err: sqlx::Error) -> StoreError {
    const CONFLICTS: [(&str, &str); 6] = [
        ("idempotency_key", "idempotency key"),
        ("reset_codes_one_pending", PENDING_CODE),
        ("email", "email"),
        ("reset_codes", "code id"),
        ("events", "event sequence"),
        ("outbox", "outbox id"),
    ];
    if is_unique_violation(&err) {
        if let Some((_, conflict)) = CONFLICTS
            .iter()
            .find(|(needle, _)| violation_mentions(&err, needle))
        {
            return StoreError::Conflict(conflict);
        }
    }
    db_error("change user", err)
}

/// A value bound to a `$n` of a [`Batch`].
enum Value {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bytes(Vec<u8>),
    Bool(bool),
    OptBool(Option<bool>),
}

/// One statement of a [`Batch`]; `name` is its CTE name on PostgreSQL. A step that returns
/// rows ends in `RETURNING 'name' AS k, … AS v`.
struct Step {
    name: String,
    sql: String,
    returns: bool,
    /// Changes nothing unless the guarded update happened.
    guarded: bool,
}

/// The statements of one change over one list of parameters.
struct Batch {
    params: Vec<Value>,
    steps: Vec<Step>,
    /// Sent as one call with its own `BEGIN` and `COMMIT` (SQLite).
    one_call: bool,
}

impl Batch {
    /// Binds `value` to the next parameter; its placeholder.
    fn p(&mut self, value: Value) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// A step that changes what it changes whether or not the guard passed: only the
    /// transaction's rollback undoes it.
    fn step(&mut self, name: impl Into<String>, sql: String, returns: bool) {
        self.steps.push(Step {
            name: name.into(),
            sql,
            returns,
            guarded: false,
        });
    }

    /// In a one-call batch, a check that stops the call (before its `COMMIT`) when
    /// `failed` — a condition on the statement before, through `changes()`, or on the rows —
    /// holds: the row it then inserts violates `change_guard`'s CHECK.
    fn check(&mut self, failed: &str) {
        if self.one_call {
            self.step(
                "check",
                format!("INSERT INTO change_guard (must_hold) SELECT 0 WHERE {failed}"),
                false,
            );
        }
    }

    /// A step that changes nothing unless the guarded update happened.
    fn guarded(&mut self, name: impl Into<String>, sql: String, returns: bool) {
        self.steps.push(Step {
            name: name.into(),
            sql,
            returns,
            guarded: true,
        });
    }

    /// Whether the batch may run as one statement outside a transaction: on PostgreSQL, when
    /// every step depends on the guarded update, a failed guard leaves nothing behind, so the
    /// statement's own atomicity is the transaction (one round trip instead of three). A change
    /// that counts a rate limit, consumes a code or erases data has steps that a later check
    /// may need to undo, and runs in a transaction.
    ///
    /// The statement's snapshot is taken before it waits for the user's row, so a step that
    /// reads other rows of the user may miss what a change committed in between. Only the void
    /// reads such rows (tokens revoked are never created under the user's lock); with a new
    /// code in the same batch, a missed pending code shows as a one-pending conflict, which
    /// [`SqlStore::write_change`] answers by running the batch the locking way. A void without a
    /// new code would miss it silently, so such a batch always takes the transaction.
    fn commits_alone(&self, form: BatchForm) -> bool {
        let has = |name: &str| self.steps.iter().any(|s| s.name == name);
        form == BatchForm::Ctes && self.steps.iter().all(|s| s.guarded) && (!has("v") || has("n"))
    }

    /// The change's steps, in the order [`UserChange`] documents.
    ///
    /// With `one_call` (SQLite), the checks a caller would make on the returned rows are
    /// steps too, and [`Batch::sql`] wraps the steps in `BEGIN IMMEDIATE` … `COMMIT`.
    fn of(change: &UserChange, form: BatchForm, one_call: bool) -> Result<Self, StoreError> {
        let mut b = Batch {
            params: Vec::new(),
            steps: Vec::new(),
            one_call,
        };
        let t = b.p(Value::Text(change.tenant_id.as_str().to_owned()));
        let u = b.p(Value::Text(change.user_id.as_str().to_owned()));
        let at = b.p(Value::Int(micros(change.at)));
        let this_user = format!("tenant_id = {t} AND user_id = {u}");

        // The guard: the user's row after the guarded update, as a relation `g` of one
        // column `v` (the new sequence), empty when the update did not happen.
        let guard = match form {
            BatchForm::Ctes => "(SELECT v FROM u)".to_owned(),
            BatchForm::Statements => {
                format!("(SELECT sequence AS v FROM users WHERE tenant_id = {t} AND id = {u})")
            }
        };

        if let Some(hit) = &change.rate_limit {
            let key = b.p(Value::Text(hit.key.clone()));
            let start = b.p(Value::Int(hit.window_start()));
            let end = b.p(Value::Int(hit.window_end()));
            let sql = count_hit_sql(&key, &start, &end, "'hits' AS k, count AS v");
            b.step("r", sql, true);
            if one_call {
                let limit = b.p(Value::Int(i64::from(hit.limit)));
                b.check(&format!(
                    "EXISTS (SELECT 1 FROM rate_limits WHERE key = {key} AND count > {limit})"
                ));
            }
        }

        let mut code_steps = Vec::new();
        let consumed = if let Some(code_id) = &change.consume_code {
            let id = b.p(Value::Text(code_id.as_str().to_owned()));
            b.step(
                "c",
                format!(
                    "UPDATE reset_codes SET used_at = {at}, outcome = 'used' \
                     WHERE {this_user} AND id = {id} AND used_at IS NULL \
                     RETURNING 'consumed' AS k, 1 AS v"
                ),
                true,
            );
            b.check("changes() = 0");
            code_steps.push("c");
            Some(id)
        } else {
            None
        };

        // A new code always replaces the pending one (only the latest is valid; a partial
        // unique index holds at most one pending code per user). Never the consumed row:
        // PostgreSQL does not allow two steps of one statement to update the same row.
        if change.void_pending_codes || change.new_code.is_some() {
            let not_consumed = consumed
                .map(|id| format!(" AND id <> {id}"))
                .unwrap_or_default();
            let guard_void = match form {
                BatchForm::Ctes => " AND EXISTS (SELECT 1 FROM u)",
                BatchForm::Statements => "",
            };
            b.guarded(
                "v",
                format!(
                    "UPDATE reset_codes SET used_at = {at}, outcome = 'voided' \
                     WHERE {this_user} AND used_at IS NULL{not_consumed}{guard_void} \
                     RETURNING 'voided' AS k, 0 AS v"
                ),
                false,
            );
            code_steps.push("v");
        }

        if let Some(code) = &change.new_code {
            let id = b.p(Value::Text(code.id.as_str().to_owned()));
            let key_id = b.p(Value::Text(code.key_id.clone()));
            let mac = b.p(Value::Bytes(code.mac.clone()));
            let kind = b.p(Value::Text(code.kind.as_str().to_owned()));
            let expires = b.p(Value::Int(micros(code.expires_at)));
            // PostgreSQL runs a statement's CTEs in no fixed order; reading the void's (and
            // the consume's) rows first makes them finish before the new pending row
            // meets the one-pending index.
            let after = match form {
                BatchForm::Ctes => code_steps
                    .iter()
                    .map(|s| format!(" AND (SELECT COUNT(*) FROM {s}) >= 0"))
                    .collect::<String>(),
                BatchForm::Statements => String::new(),
            };
            b.guarded(
                "n",
                format!(
                    "INSERT INTO reset_codes \
                     (tenant_id, user_id, id, key_id, mac, kind, created_at, expires_at, attempts) \
                     SELECT {t}, {u}, {id}, {key_id}, {mac}, {kind}, {at}, {expires}, 0 \
                     FROM {guard} AS g WHERE 1 = 1{after}"
                ),
                false,
            );
        }

        // Erasure first: on SQLite its statements must read the row (the email) before the
        // update overwrites it, and must not reach the event and messages appended below.
        if change.erase_personal_data {
            Self::erase_personal_data(&mut b, &t, &u);
        }

        Self::update_user(&mut b, change, &t, &u, &at);

        // The event takes the new sequence. On SQLite it follows the guarded update at once,
        // so `changes()` still counts that update's rows: when the guard failed, the row still
        // holds the old sequence, which must not be appended again.
        let event = &change.event;
        let kind = b.p(Value::Text(event.kind.to_owned()));
        let actor = b.p(Value::Text(event.actor.clone()));
        let ip = b.p(Value::OptText(event.ip.clone()));
        let payload = b.p(Value::Text(json_text("event payload", &event.payload)?));
        let changed = match form {
            BatchForm::Ctes => "",
            BatchForm::Statements => " WHERE changes() = 1",
        };
        b.guarded(
            "e",
            format!(
                "INSERT INTO events \
                 (tenant_id, aggregate_id, sequence, kind, actor, ip, at, payload) \
                 SELECT {t}, {u}, g.v, {kind}, {actor}, {ip}, {at}, {payload} \
                 FROM {guard} AS g{changed}"
            ),
            false,
        );
        // The event is appended exactly when the guarded update happened.
        b.check("changes() = 0");

        if change.revoke_user_tokens {
            b.guarded(
                "k",
                format!(
                    "UPDATE api_tokens SET revoked_at = {at} \
                     WHERE role = 'user' AND {this_user} AND revoked_at IS NULL \
                     AND EXISTS (SELECT 1 FROM {guard} AS g)"
                ),
                false,
            );
        }

        for (i, message) in change.outbox.iter().enumerate() {
            // One transaction never spans tenants (DESIGN 11).
            if message.tenant_id != change.tenant_id {
                return Err(corrupt(
                    "outbox message for another tenant in a user change",
                ));
            }
            let values = [
                Value::Text(message.id.as_str().to_owned()),
                Value::Text(message.user_id.as_str().to_owned()),
                Value::Text(message.channel.as_str().to_owned()),
                Value::OptText(message.recipient.clone()),
                Value::Text(message.kind.as_str().to_owned()),
                Value::Text(message.idempotency_key.clone()),
                Value::Text(message.key_id.clone()),
                Value::Bytes(message.body.clone()),
                Value::Text(message.state.as_str().to_owned()),
                Value::Int(i64::from(message.attempts)),
                Value::Int(micros(message.next_attempt_at)),
                Value::OptText(message.last_error.clone()),
                Value::Int(micros(message.created_at)),
                Value::OptInt(message.sent_at.map(micros)),
                Value::OptInt(message.body_expires_at.map(micros)),
                Value::OptText(message.request_id.clone()),
            ];
            let placeholders = values
                .into_iter()
                .map(|v| b.p(v))
                .collect::<Vec<_>>()
                .join(", ");
            b.guarded(
                format!("m{i}"),
                format!(
                    "INSERT INTO outbox ({OUTBOX_COLUMNS}) \
                     SELECT {t}, {placeholders} FROM {guard} AS g"
                ),
                false,
            );
        }
        Ok(b)
    }

    /// The guarded update of the user's row: password, state, sequence + 1 and change date
    /// (and, for an erasure, the personal columns), only while the state allows the change.
    fn update_user(b: &mut Batch, change: &UserChange, t: &str, u: &str, at: &str) {
        let (hash, change_required) = match &change.set_password {
            Some(p) => (Some(p.hash.clone()), Some(p.change_required)),
            None => (None, None),
        };
        let hash = b.p(Value::OptText(hash));
        let change_required = b.p(Value::OptBool(change_required));
        let new_state = b.p(Value::OptText(
            change.set_state.map(|s| s.as_str().to_owned()),
        ));
        let allowed = if change.require_state.is_empty() {
            format!(
                "state <> {}",
                b.p(Value::Text(UserState::Deleted.as_str().to_owned()))
            )
        } else {
            let states = change
                .require_state
                .iter()
                .map(|s| b.p(Value::Text(s.as_str().to_owned())))
                .collect::<Vec<_>>()
                .join(", ");
            format!("state IN ({states})")
        };
        // Erasure (SPEC §12): the email becomes [`erased_email`] — in `email_lower` too, as it
        // is (ids are case-sensitive, so lower-casing could make two placeholders collide; no
        // lookup ever folds one, as no placeholder parses as an address).
        let erase = if change.erase_personal_data {
            let placeholder = b.p(Value::Text(
                erased_email(&change.user_id).as_str().to_owned(),
            ));
            let no = b.p(Value::Bool(false));
            format!(
                ", email = {placeholder}, email_lower = {placeholder}, email_verified = {no}, \
                 phone = NULL, phone_verified = {no}, username = '', username_lower = '', \
                 first_name = '', last_name = '', display_name = '', password_hash = NULL, \
                 password_change_required = {no}"
            )
        } else {
            String::new()
        };
        let password = if change.erase_personal_data {
            String::new()
        } else {
            format!(
                "password_hash = COALESCE({hash}, password_hash), \
                 password_change_required = COALESCE({change_required}, password_change_required), "
            )
        };
        b.guarded(
            "u",
            format!(
                "UPDATE users SET {password}state = COALESCE({new_state}, state), \
                 sequence = sequence + 1, change_date = {at}{erase} \
                 WHERE tenant_id = {t} AND id = {u} AND {allowed} \
                 RETURNING 'seq' AS k, sequence AS v"
            ),
            true,
        );
    }

    /// The rest of an erasure: the email's global index row goes, so the address can be given
    /// to a new user; the user's email and SMS messages lose body, recipient and error text (a
    /// pending one is parked); the client addresses in the user's events go. The event and
    /// messages this change appends come after (on PostgreSQL, outside the statement's
    /// snapshot) and keep theirs. On SQLite these run before the guarded update (the email
    /// is read from the row as it was); a change that fails rolls them back with the rest.
    fn erase_personal_data(b: &mut Batch, t: &str, u: &str) {
        b.step(
            "x1",
            format!(
                "DELETE FROM email_index WHERE tenant_id = {t} AND user_id = {u} \
                 AND email_lower = (SELECT email_lower FROM users \
                 WHERE tenant_id = {t} AND id = {u})"
            ),
            false,
        );
        let empty = b.p(Value::Bytes(Vec::new()));
        let erased = b.p(Value::Text(ERASED_ERROR.to_owned()));
        // Both sides of each CASE read the row as it was.
        b.step(
            "x2",
            format!(
                "UPDATE outbox SET body = {empty}, recipient = NULL, body_expires_at = NULL, \
                 last_error = CASE WHEN state = 'sent' THEN NULL ELSE {erased} END, \
                 state = CASE WHEN state = 'pending' THEN 'failed' ELSE state END \
                 WHERE tenant_id = {t} AND user_id = {u} AND channel IN ('email', 'sms')"
            ),
            false,
        );
        b.step(
            "x3",
            format!("UPDATE events SET ip = NULL WHERE tenant_id = {t} AND aggregate_id = {u}"),
            false,
        );
    }

    /// The statement text in the database's form.
    fn sql(&self, form: BatchForm) -> String {
        match form {
            BatchForm::Statements => {
                let steps = self
                    .steps
                    .iter()
                    .map(|s| s.sql.as_str())
                    .collect::<Vec<_>>()
                    .join(";\n");
                if self.one_call {
                    format!("BEGIN IMMEDIATE;\n{steps};\nCOMMIT")
                } else {
                    steps
                }
            }
            BatchForm::Ctes => {
                // A CTE sees only those before it: the guard, which the others read, first.
                let (guard, rest): (Vec<&Step>, Vec<&Step>) =
                    self.steps.iter().partition(|s| s.name == "u");
                let ctes = guard
                    .into_iter()
                    .chain(rest)
                    .map(|s| format!("{} AS ({})", s.name, s.sql))
                    .collect::<Vec<_>>()
                    .join(",\n");
                let results = self
                    .steps
                    .iter()
                    .filter(|s| s.returns)
                    .map(|s| format!("SELECT k, CAST(v AS BIGINT) AS v FROM {}", s.name))
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                format!("WITH {ctes}\n{results}")
            }
        }
    }

    /// `stmt` with the batch's values bound in order.
    fn bind<'q, DB: SqlBackend>(self, mut stmt: Stmt<'q, DB>) -> Stmt<'q, DB> {
        for value in self.params {
            stmt = match value {
                Value::Int(v) => stmt.bind(v),
                Value::OptInt(v) => stmt.bind(v),
                Value::Text(v) => stmt.bind(v),
                Value::OptText(v) => stmt.bind(v),
                Value::Bytes(v) => stmt.bind(v),
                Value::Bool(v) => stmt.bind(v),
                Value::OptBool(v) => stmt.bind(v),
            };
        }
        stmt
    }
}

/// The error text of a message whose user was deleted (and whose data was erased).
const ERASED_ERROR: &str = "user deleted: personal data erased";

#[cfg(test)]
mod tests {
    use rekey_core::domain::{TenantId, UserId, UserState};
    use rekey_core::ports::store::{RateLimitHit, StoreError, TenantStore, UserChange, UserStore};
    use rekey_testkit::fixtures::{self, epoch};

    use crate::SqliteStore;

    fn tenant_id(id: &str) -> TenantId {
        TenantId::from_trusted(id.to_owned())
    }

    fn user_id(id: &str) -> UserId {
        UserId::from_trusted(id.to_owned())
    }

    async fn store_with_ada(state: UserState) -> SqliteStore {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let event = fixtures::event("test").build();
        store
            .insert_tenant(&fixtures::tenant("t1").build(), &event)
            .await
            .unwrap();
        store
            .insert_user(&fixtures::user().state(state).build(), &event)
            .await
            .unwrap();
        store
    }

    fn reset() -> UserChange {
        let mut change = UserChange::new(
            tenant_id("t1"),
            user_id("u1"),
            epoch(),
            fixtures::event("user.password.code.added").build(),
        );
        change.require_state = vec![UserState::Initial, UserState::Active];
        change.void_pending_codes = true;
        change
    }

    /// The one-call path itself (its failures fall back to the transactional path, which the
    /// conformance suite covers, so only this test shows that a good change commits in it).
    #[tokio::test]
    async fn sqlite_commits_a_good_change_in_one_call() {
        use rekey_core::domain::{CodeId, CodeKind};
        use rekey_core::ports::store::{CodeStore, NewResetCode};

        let store = store_with_ada(UserState::Active).await;
        assert_eq!(store.write_in_one_call(&reset()).await.unwrap(), Some(2));
        let user = store.user(&tenant_id("t1"), &user_id("u1")).await.unwrap();
        assert_eq!(user.map(|u| u.sequence), Some(2));

        // A new code, then its consumption: the consume's check reads `changes()` after an
        // `UPDATE … RETURNING`.
        let code_id = CodeId::from_trusted("c1".to_owned());
        let mut issue = reset();
        issue.new_code = Some(NewResetCode {
            id: code_id.clone(),
            key_id: "k1".to_owned(),
            mac: vec![7; 32],
            kind: CodeKind::Reset,
            expires_at: epoch() + chrono::Duration::hours(1),
        });
        assert_eq!(store.write_in_one_call(&issue).await.unwrap(), Some(3));
        let mut consume = reset();
        consume.consume_code = Some(code_id.clone());
        assert_eq!(store.write_in_one_call(&consume).await.unwrap(), Some(4));
        let pending = store
            .pending_code(&tenant_id("t1"), &user_id("u1"))
            .await
            .unwrap();
        assert!(pending.is_none());
        // Consumed once: the second time the check stops the call.
        assert_eq!(store.write_in_one_call(&consume).await.unwrap(), None);
    }

    /// A failed check stops the call before its COMMIT: nothing is written, and the
    /// connection is usable again (its transaction was rolled back).
    #[tokio::test]
    async fn sqlite_one_call_stops_at_a_failed_check_and_rolls_back() {
        let store = store_with_ada(UserState::Locked).await;
        assert_eq!(store.write_in_one_call(&reset()).await.unwrap(), None);

        let active = store_with_ada(UserState::Active).await;
        let mut limited = reset();
        limited.rate_limit = Some(RateLimitHit {
            key: "msg:t1:u1".to_owned(),
            limit: 1,
            window_secs: 3600,
            at: epoch(),
        });
        assert_eq!(active.write_in_one_call(&limited).await.unwrap(), Some(2));
        assert_eq!(active.write_in_one_call(&limited).await.unwrap(), None);
        // The refused hit rolled back with the rest: the user and the counter are as after
        // the first change, and the transactional path names the refusal.
        let user = active.user(&tenant_id("t1"), &user_id("u1")).await.unwrap();
        assert_eq!(user.map(|u| u.sequence), Some(2));
        let err = active.change_user(&limited).await.unwrap_err();
        assert!(matches!(err, StoreError::RateLimited { .. }), "{err:?}");
        assert_eq!(active.write_in_one_call(&reset()).await.unwrap(), Some(3));
    }

    /// Any other failure is the change's own error, answered at once: with the write lock
    /// held elsewhere, the caller hears "unavailable" after one busy timeout, not two (the
    /// transactional way would wait for the same lock again).
    #[tokio::test]
    async fn sqlite_one_call_answers_a_held_write_lock_itself() {
        use sqlx::{Connection, Executor};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rekey.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let event = fixtures::event("test").build();
        store
            .insert_tenant(&fixtures::tenant("t1").build(), &event)
            .await
            .unwrap();
        store
            .insert_user(&fixtures::user().build(), &event)
            .await
            .unwrap();
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap();

        let started = std::time::Instant::now();
        let err = store.write_in_one_call(&reset()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable), "{err:?}");
        assert!(
            started.elapsed() < crate::sqlite::BUSY_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        other.execute("ROLLBACK").await.unwrap();
        assert_eq!(store.write_in_one_call(&reset()).await.unwrap(), Some(2));
    }
}
