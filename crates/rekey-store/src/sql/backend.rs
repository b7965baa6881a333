//! What [`SqlStore`](super::SqlStore) needs of an sqlx database, said once.
//!
//! Generic sqlx code needs bounds such as `for<'q> i64: Encode<'q, DB>` or
//! `for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>`. Rust keeps only a trait's
//! supertraits when a bound names it (rust-lang/rust#20671), and the subjects of those bounds are
//! `i64` or `&mut DB::Connection`, never `DB`; so a trait whose `where` clause lists them would
//! still make every impl block repeat them. Instead each capability is a small trait *of the
//! database* (`DB: Binds<i64>`, `DB: Runs`), implemented for every sqlx database that has it by
//! one blanket impl which carries the sqlx bound, and [`SqlBackend`] gathers them as
//! supertraits. The store's impl blocks then ask for `DB: SqlBackend` alone. [`Stmt`] wraps
//! sqlx's query so that statements still read `query(sql).bind(…).fetch_all(&mut *tx)`.

use std::future::Future;

use sqlx::query::Query;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Postgres, Row,
    Sqlite, Type,
};

use super::rows::{
    CodeRow, EventRow, JoinedTenantRow, JoinedTokenRow, OutboxRow, TenantRow, TokenRow, UserRow,
};

/// An sqlx database the store runs on: it binds and decodes the portable column types (BIGINT,
/// BOOLEAN, TEXT, bytes), runs statements on a connection or a pool, and reads the row structs.
pub trait SqlBackend:
    Runs
    + Binds<i64>
    + Binds<bool>
    + Binds<String>
    + Binds<Vec<u8>>
    + Binds<Option<i64>>
    + Binds<Option<bool>>
    + Binds<Option<String>>
    + Decodes<i64>
    + Decodes<String>
    + Decodes<Option<String>>
    + Reads<TenantRow>
    + Reads<JoinedTenantRow>
    + Reads<UserRow>
    + Reads<TokenRow>
    + Reads<JoinedTokenRow>
    + Reads<CodeRow>
    + Reads<EventRow>
    + Reads<OutboxRow>
{
}

impl SqlBackend for Sqlite {}
impl SqlBackend for Postgres {}

/// Binds a value of type `T` as a statement parameter.
pub trait Binds<T>: Database {
    fn bind<'q>(query: SqlxQuery<'q, Self>, value: T) -> SqlxQuery<'q, Self>;
}

impl<DB, T> Binds<T> for DB
where
    DB: Database,
    T: Send + 'static,
    for<'q> T: Encode<'q, DB> + Type<DB>,
{
    fn bind<'q>(query: SqlxQuery<'q, Self>, value: T) -> SqlxQuery<'q, Self> {
        query.bind(value)
    }
}

/// Decodes one column of a row as a `T`, by name.
pub trait Decodes<T>: Database {
    fn get(row: &Self::Row, column: &str) -> Result<T, sqlx::Error>;
}

impl<DB, T> Decodes<T> for DB
where
    DB: Database,
    for<'r> T: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    fn get(row: &Self::Row, column: &str) -> Result<T, sqlx::Error> {
        row.try_get(column)
    }
}

/// Decodes a whole row as the row struct `R` (its `sqlx::FromRow`).
pub trait Reads<R>: Database {
    fn read(row: &Self::Row) -> Result<R, sqlx::Error>;
}

impl<DB, R> Reads<R> for DB
where
    DB: Database,
    for<'r> R: FromRow<'r, DB::Row>,
{
    fn read(row: &Self::Row) -> Result<R, sqlx::Error> {
        R::from_row(row)
    }
}

/// sqlx's query type for `DB`.
pub type SqlxQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// Where a statement runs: a connection (inside a transaction) or the reader pool.
pub enum On<'e, DB: Database> {
    Conn(&'e mut DB::Connection),
    Pool(&'e Pool<DB>),
}

impl<'e, DB: Database> From<&'e mut DB::Connection> for On<'e, DB> {
    fn from(conn: &'e mut DB::Connection) -> Self {
        On::Conn(conn)
    }
}

impl<'e, DB: Database> From<&'e Pool<DB>> for On<'e, DB> {
    fn from(pool: &'e Pool<DB>) -> Self {
        On::Pool(pool)
    }
}

/// Runs statements on a connection or a pool.
pub trait Runs: Database {
    fn execute<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'e;
    fn fetch_one<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Self::Row, sqlx::Error>> + Send + 'e;
    fn fetch_optional<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'e;
    fn fetch_all<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'e;
}

/// The one place that says which sqlx executors the store uses.
macro_rules! run_on {
    ($query:ident . $method:ident ($on:ident)) => {
        match $on {
            On::Conn(conn) => $query.$method(conn).await,
            On::Pool(pool) => $query.$method(pool).await,
        }
    };
}

impl<DB> Runs for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn execute<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> Result<Self::QueryResult, sqlx::Error> {
        run_on!(query.execute(on))
    }

    async fn fetch_one<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> Result<Self::Row, sqlx::Error> {
        run_on!(query.fetch_one(on))
    }

    async fn fetch_optional<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> Result<Option<Self::Row>, sqlx::Error> {
        run_on!(query.fetch_optional(on))
    }

    async fn fetch_all<'q: 'e, 'e>(
        query: SqlxQuery<'q, Self>,
        on: On<'e, Self>,
    ) -> Result<Vec<Self::Row>, sqlx::Error> {
        run_on!(query.fetch_all(on))
    }
}

/// A statement and the values bound so far; built by [`query`].
pub struct Stmt<'q, DB: Database>(SqlxQuery<'q, DB>);

/// A statement of `sql`, whose `$n` placeholders are bound in order with [`Stmt::bind`].
pub fn query<DB: Database>(sql: &str) -> Stmt<'_, DB> {
    Stmt(sqlx::query(sql))
}

impl<'q, DB: SqlBackend> Stmt<'q, DB> {
    pub fn bind<T>(self, value: T) -> Self
    where
        DB: Binds<T>,
    {
        Stmt(DB::bind(self.0, value))
    }

    pub async fn execute<'e>(
        self,
        on: impl Into<On<'e, DB>>,
    ) -> Result<DB::QueryResult, sqlx::Error>
    where
        'q: 'e,
    {
        DB::execute(self.0, on.into()).await
    }

    pub async fn fetch_one<'e>(self, on: impl Into<On<'e, DB>>) -> Result<DB::Row, sqlx::Error>
    where
        'q: 'e,
    {
        DB::fetch_one(self.0, on.into()).await
    }

    pub async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e, DB>>,
    ) -> Result<Option<DB::Row>, sqlx::Error>
    where
        'q: 'e,
    {
        DB::fetch_optional(self.0, on.into()).await
    }

    pub async fn fetch_all<'e>(self, on: impl Into<On<'e, DB>>) -> Result<Vec<DB::Row>, sqlx::Error>
    where
        'q: 'e,
    {
        DB::fetch_all(self.0, on.into()).await
    }
}
