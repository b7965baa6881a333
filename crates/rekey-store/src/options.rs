//! How a store is opened beyond its URL: the `[database]` section of the configuration
//! (`REKEY_DATABASE__…`).

/// Settings for opening a store that the URL does not carry. TLS to PostgreSQL is the URL's
/// business (`sslmode`, `sslrootcert`, see [`crate::connect`]); these are the pool's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// `REKEY_DATABASE__MAX_CONNECTIONS`: the most connections one process keeps open to
    /// PostgreSQL (default [`DatabaseOptions::DEFAULT_MAX_CONNECTIONS`]). Size it so that
    /// replicas × this (plus the CLI's occasional connection) fits the server's
    /// `max_connections`. At least 1.
    ///
    /// SQLite ignores it: SQLite has one writer, so its pools are fixed — one write connection
    /// and a few read-only ones ([`crate::SqliteStore`]) — and more connections would only
    /// queue on the same file lock.
    pub max_connections: u32,
}

impl DatabaseOptions {
    /// The PostgreSQL pool size when none is configured (SPEC §12).
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}
