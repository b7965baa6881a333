//! [`UserStore`] on SQL: users, the global user-id and email indexes, and the user search, which
//! is filtered, counted and paged in the database. The transaction of a user change is in
//! `change.rs`.

use std::sync::LazyLock;

use async_trait::async_trait;
use rekey_core::domain::{Details, NewEvent, Tenant, User, UserState};
use rekey_core::domain::{TenantId, UserId};
use rekey_core::ports::store::{
    StoreError, TextMatch, UserChange, UserFilter, UserPage, UserSearch, UserStore,
};

use super::backend::SqlBackend;
use super::dialect::Dialect;
use super::rows::{
    JoinedTenantRow, UserRow, JOINED_TENANT_COLUMNS, JOINED_USER_COLUMNS, USER_COLUMNS,
};
use super::SqlStore;
use crate::codec::{json_text, micros, to_i64, to_u64, truncate};
use crate::error::{
    db_error, is_foreign_key_violation, is_unique_violation, unique_as, violation_mentions,
};

#[async_trait]
impl<DB: SqlBackend> UserStore for SqlStore<DB> {
    async fn insert_user(&self, user: &User, event: &NewEvent) -> Result<(), StoreError> {
        const OP: &str = "insert user";
        let email_lower = user.email.as_str().to_lowercase();
        let sequence = to_i64("users.sequence", user.sequence)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            // The global index first: a taken id is reported as such, whatever the tenant.
            Self::query("INSERT INTO user_index (user_id, tenant_id) VALUES ($1, $2)")
                .bind(user.id.as_str().to_owned())
                .bind(user.tenant_id.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| unique_as(OP, "user id", e))?;
            let sql = format!(
                "INSERT INTO users ({USER_COLUMNS}, email_lower, username_lower) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19)"
            );
            Self::query(&sql)
                .bind(user.tenant_id.as_str().to_owned())
                .bind(user.id.as_str().to_owned())
                .bind(user.username.clone())
                .bind(user.email.as_str().to_owned())
                .bind(user.email_verified)
                .bind(user.phone.as_ref().map(|p| p.as_str().to_owned()))
                .bind(user.phone_verified)
                .bind(user.first_name.clone())
                .bind(user.last_name.clone())
                .bind(user.display_name.clone())
                .bind(user.preferred_language.clone())
                .bind(user.state.as_str().to_owned())
                .bind(user.password_hash.clone())
                .bind(user.password_change_required)
                .bind(sequence)
                .bind(micros(user.creation_date))
                .bind(micros(user.change_date))
                .bind(email_lower.clone())
                .bind(user.username.to_lowercase())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        StoreError::NotFound
                    } else if is_unique_violation(&e) && violation_mentions(&e, "email") {
                        StoreError::Conflict("email")
                    } else {
                        unique_as(OP, "user id", e)
                    }
                })?;
            Self::query(
                "INSERT INTO email_index (email_lower, tenant_id, user_id) VALUES ($1, $2, $3)",
            )
            .bind(email_lower.clone())
            .bind(user.tenant_id.as_str().to_owned())
            .bind(user.id.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| unique_as(OP, "email", e))?;
            Self::insert_event(
                &mut tx,
                &user.tenant_id,
                user.id.as_str(),
                sequence,
                user.creation_date,
                event,
            )
            .await
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
        let row = Self::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("user", e))?;
        row.as_ref().map(Self::decode::<UserRow, User>).transpose()
    }

    async fn user_with_tenant(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<Option<(User, Tenant)>, StoreError> {
        let row = Self::query(&USER_WITH_TENANT)
            .bind(tenant.as_str().to_owned())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("user with tenant", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = Self::decode::<UserRow, User>(&row)?;
        let tenant = Self::decode::<JoinedTenantRow, Tenant>(&row)?;
        Ok(Some((user, tenant)))
    }

    async fn user_tenant(&self, id: &UserId) -> Result<Option<TenantId>, StoreError> {
        let row = Self::query("SELECT tenant_id FROM user_index WHERE user_id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("user tenant", e))?;
        row.map(|r| Self::get(&r, "tenant_id").map(TenantId::from_trusted))
            .transpose()
    }

    async fn users_by_email(
        &self,
        tenant: Option<&TenantId>,
        email: &str,
    ) -> Result<Vec<User>, StoreError> {
        const OP: &str = "users by email";
        let email_lower = email.to_lowercase();
        let by_tenant = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email_lower = $2 \
             ORDER BY id"
        );
        let tenants: Vec<String> = match tenant {
            Some(tenant) => vec![tenant.as_str().to_owned()],
            // Across tenants: the global index names the tenants, then each tenant is read on
            // its own (no query spans tenants).
            None => Self::query(
                "SELECT tenant_id FROM email_index WHERE email_lower = $1 ORDER BY tenant_id",
            )
            .bind(email_lower.clone())
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?
            .iter()
            .map(|r| Self::get(r, "tenant_id"))
            .collect::<Result<_, _>>()?,
        };
        let mut users = Vec::new();
        for tenant in tenants {
            let rows = Self::query(&by_tenant)
                .bind(tenant)
                .bind(email_lower.clone())
                .fetch_all(&self.reader)
                .await
                .map_err(|e| db_error(OP, e))?;
            for row in &rows {
                users.push(Self::decode::<UserRow, User>(row)?);
            }
        }
        Ok(users)
    }

    async fn search_users(&self, search: &UserSearch) -> Result<UserPage, StoreError> {
        const OP: &str = "search users";
        let conditions = UserConditions::of(self.dialect, search)?;
        let where_sql = &conditions.sql;

        let count_sql = format!("SELECT COUNT(*) AS total FROM users WHERE {where_sql}");
        let mut count = Self::query(&count_sql);
        for value in &conditions.values {
            count = count.bind(value.clone());
        }
        let row = count
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?;
        let total = to_u64("users count", Self::get(&row, "total")?)?;

        let direction = if search.asc { "ASC" } else { "DESC" };
        let n = conditions.values.len();
        let page_sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {where_sql} \
             ORDER BY creation_date {direction}, id{order} {direction} \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2,
            order = self.dialect.code_point_order,
        );
        let mut page = Self::query(&page_sql);
        for value in &conditions.values {
            page = page.bind(value.clone());
        }
        // An offset past i64::MAX is past every row there can be.
        let offset = i64::try_from(search.offset).unwrap_or(i64::MAX);
        let rows = page
            .bind(i64::from(search.limit))
            .bind(offset)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?;
        let users = rows
            .iter()
            .map(Self::decode::<UserRow, User>)
            .collect::<Result<_, _>>()?;
        Ok(UserPage { total, users })
    }

    async fn change_user(&self, change: &UserChange) -> Result<Details, StoreError> {
        if let Some(hit) = &change.rate_limit {
            self.refuse_if_full(hit).await?;
        }
        let sequence = self.write_change(change).await?;
        Ok(Details {
            sequence: to_u64("users.sequence", sequence)?,
            change_date: truncate(change.at),
            resource_owner: change.tenant_id.clone(),
            creation_date: None,
        })
    }
}

/// A user's row and its tenant's: the user's columns as named in [`USER_COLUMNS`], the
/// tenant's as [`JOINED_TENANT_COLUMNS`] names them.
static USER_WITH_TENANT: LazyLock<String> = LazyLock::new(|| {
    let user_columns = &*JOINED_USER_COLUMNS;
    format!(
        "SELECT {user_columns}, {JOINED_TENANT_COLUMNS} \
         FROM users u JOIN tenants t ON t.id = u.tenant_id \
         WHERE u.tenant_id = $1 AND u.id = $2"
    )
});

/// The WHERE clause of a user search, with the values it binds in placeholder order (`$1`
/// is `values[0]`). Every value is bound, never spliced into the SQL; the text comparisons use
/// `=`, `substr` and the dialect's position function rather than LIKE, so a needle's `%`, `_`
/// or `\` are plain characters and no escaping is needed.
struct UserConditions {
    sql: String,
    values: Vec<String>,
}

impl UserConditions {
    fn of(dialect: &Dialect, search: &UserSearch) -> Result<Self, StoreError> {
        let mut this = Self {
            sql: "1 = 1".to_owned(),
            values: Vec::new(),
        };
        if let Some(tenant) = &search.tenant {
            let p = this.bind(tenant.as_str());
            this.and(&format!("tenant_id = {p}"));
        }
        if !search.include_deleted {
            let p = this.bind(UserState::Deleted.as_str());
            this.and(&format!("state <> {p}"));
        }
        for filter in &search.filters {
            match filter {
                UserFilter::UserName(needle, how) => {
                    // The lower-cased copy is written by `insert_user` with Rust's
                    // `to_lowercase`, the same folding as the needle's below; SQL's LOWER
                    // folds only ASCII on SQLite, but per locale on PostgreSQL.
                    let column = if how.ignores_case() {
                        "username_lower"
                    } else {
                        "username"
                    };
                    this.text(dialect, column, needle, *how);
                }
                UserFilter::Email(needle, how) => {
                    let column = if how.ignores_case() {
                        "email_lower"
                    } else {
                        "email"
                    };
                    this.text(dialect, column, needle, *how);
                }
                UserFilter::State(state) => {
                    let p = this.bind(state.as_str());
                    this.and(&format!("state = {p}"));
                }
                UserFilter::InIds(ids) => {
                    let list = this.list(ids.iter().map(String::as_str))?;
                    this.and(&format!("id IN ({})", (dialect.json_strings)(&list)));
                }
                UserFilter::InEmails(emails) => {
                    // The request compares ignoring ASCII case; emails are ASCII (validated),
                    // so their `email_lower` is their ASCII lower case.
                    let lowered: Vec<String> =
                        emails.iter().map(|e| e.to_ascii_lowercase()).collect();
                    let list = this.list(lowered.iter().map(String::as_str))?;
                    this.and(&format!(
                        "email_lower IN ({})",
                        (dialect.json_strings)(&list)
                    ));
                }
                UserFilter::Tenant(tenant) => {
                    let p = this.bind(tenant.as_str());
                    this.and(&format!("tenant_id = {p}"));
                }
            }
        }
        Ok(this)
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    /// Binds a value; its placeholder.
    fn bind(&mut self, value: &str) -> String {
        self.values.push(value.to_owned());
        format!("${}", self.values.len())
    }

    /// Binds a list as one JSON array; its placeholder. Strings with NUL are left out: no stored
    /// text can hold one on PostgreSQL (and its jsonb refuses `\u0000`), so on both databases
    /// they match nothing.
    fn list<'a>(&mut self, items: impl Iterator<Item = &'a str>) -> Result<String, StoreError> {
        let items: Vec<&str> = items.filter(|item| !item.contains('\0')).collect();
        let json = json_text("user search list", &items)?;
        Ok(self.bind(&json))
    }

    /// `column` compared with `needle` as `how` says. The caller picks the lower-cased column
    /// for the case-insensitive modes; the needle is folded here to match.
    fn text(&mut self, dialect: &Dialect, column: &str, needle: &str, how: TextMatch) {
        if needle.contains('\0') {
            // PostgreSQL refuses NUL in text parameters, and stores none; see `list`.
            self.and("1 = 0");
            return;
        }
        let needle = if how.ignores_case() {
            needle.to_lowercase()
        } else {
            needle.to_owned()
        };
        let p = self.bind(&needle);
        // `length` and `substr` count characters on both databases; for an empty needle each
        // form holds, as `str::starts_with("")` and friends do.
        let condition = match how {
            TextMatch::Equals | TextMatch::EqualsIgnoreCase => format!("{column} = {p}"),
            TextMatch::StartsWith | TextMatch::StartsWithIgnoreCase => {
                format!("substr({column}, 1, length({p})) = {p}")
            }
            TextMatch::EndsWith | TextMatch::EndsWithIgnoreCase => format!(
                "length({column}) >= length({p}) \
                 AND substr({column}, length({column}) - length({p}) + 1) = {p}"
            ),
            TextMatch::Contains | TextMatch::ContainsIgnoreCase => {
                format!("{}({column}, {p}) > 0", dialect.position)
            }
        };
        self.and(&condition);
    }
}
