//! The dialect: what differs between the databases beyond column types. Its two values are in
//! [`crate::sqlite`] and [`crate::postgres`].

use sqlx::migrate::Migrator;

/// What differs between the databases, beyond column types (which live in the migrations).
pub(crate) struct Dialect {
    pub(crate) name: &'static str,
    /// How a write transaction begins. SQLite: `BEGIN IMMEDIATE`, which takes the write lock up
    /// front (waiting under `busy_timeout`) instead of failing with `SQLITE_BUSY` when a read
    /// transaction later tries to upgrade. PostgreSQL: plain `BEGIN` (READ COMMITTED + row locks).
    pub(crate) begin_write: Option<&'static str>,
    /// Whether a write of one statement may run alone, as its own transaction. PostgreSQL:
    /// yes (one round trip instead of three: BEGIN, the statement, COMMIT). SQLite: no — a
    /// lone statement begins as a reader and upgrades, which can fail with `SQLITE_BUSY_SNAPSHOT`
    /// (not retried under `busy_timeout`) when another process wrote in between;
    /// `BEGIN IMMEDIATE` takes the write lock first.
    pub(crate) lone_statement_commits: bool,
    /// Locks the user's row at the start of a user change's transaction where the database has
    /// row locks (`FOR UPDATE`); SQLite's write transaction already excludes other writers.
    pub(crate) lock_user: Option<&'static str>,
    /// How the statements of a user change are sent as one: see [`BatchForm`].
    pub(crate) batch: BatchForm,
    /// Appended to the outbox claim's inner SELECT. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// concurrent claimers on several replicas each lock (and then lease) different rows instead
    /// of queueing behind one another; SQLite: nothing (the write transaction is exclusive).
    pub(crate) claim_lock: &'static str,
    /// The function giving the 1-based character position of a text in another, 0 when it does
    /// not occur: SQLite `instr`, PostgreSQL `strpos` (same arguments: haystack, needle).
    pub(crate) position: &'static str,
    /// Appended to a text column in `ORDER BY` so that it sorts by code point, as Rust compares
    /// strings: PostgreSQL ` COLLATE "C"` (the database's default collation may be a
    /// language's); SQLite's default BINARY collation already does.
    pub(crate) code_point_order: &'static str,
    /// A subquery yielding the strings of a JSON array bound at the placeholder given, so that
    /// a list of any length is one parameter (parameter counts are capped, differently per
    /// database).
    pub(crate) json_strings: fn(&str) -> String,
    pub(crate) migrator: &'static Migrator,
}

/// How the steps of a user change (`sql/change.rs`) become one call to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchForm {
    /// SQLite: statements separated by `;`, run in order in one call; each `$n` is bound by
    /// number in every statement that names it.
    Statements,
    /// PostgreSQL (one statement per call with parameters): data-modifying CTEs of one
    /// `WITH … SELECT`, which all see the snapshot from before the statement.
    Ctes,
}
