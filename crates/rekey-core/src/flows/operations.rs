//! The operations API (SPEC §11) on the operator's flows, scoped to the calling token: a
//! `system` token sees and changes everything; a `tenant_admin` only its own tenant, another
//! tenant's message or settings looking exactly like one that does not exist (SPEC §2); a
//! `user` token nothing (PERMISSION_DENIED). The scoping is decided here, not in the face.
//!
//! Listings page by key (keyset), oldest first, so a page never skips nor repeats a row
//! while new ones are written: the cursor is the key of the last row of the previous page,
//! opaque to the client (URL-safe base64 of a small JSON array).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::domain::{Event, MessageId, OutboxMessage, OutboxState, Role, Tenant, TenantId};
use crate::error::Error;
use crate::flows::access::{tenant_not_found, Caller};
use crate::flows::admin::{outbox_not_found, Retried};
use crate::flows::Rekey;
use crate::ports::store::{EventFilter, EventKey, OutboxKey, OutboxQuery};

/// Rows in a page when the caller names no limit.
pub const DEFAULT_PAGE: u32 = 100;
/// The most rows a page may hold.
pub const MAX_PAGE: u32 = 1000;

/// One page of a listing and the cursor of the next, when more rows exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    fn empty() -> Self {
        Self {
            items: Vec::new(),
            next_cursor: None,
        }
    }
}

/// `GET /rekey/v1/outbox`: which messages.
#[derive(Debug, Clone, Default)]
pub struct OutboxListing {
    pub state: Option<OutboxState>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `GET /rekey/v1/events`: which events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// A tenant id; a tenant admin may name only its own.
    pub tenant: Option<String>,
    /// The user (or tenant) the events belong to: their aggregate.
    pub user: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The tenants a caller may see: `None` all (system), else the one of its tenant admin.
fn operator_scope(caller: &Caller) -> Result<Option<TenantId>, Error> {
    let principal = caller.principal()?;
    match &principal.role {
        Role::System => Ok(None),
        Role::TenantAdmin(tenant) => Ok(Some(tenant.clone())),
        Role::User { .. } => Err(Error::permission_denied()),
    }
}

fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(Error::invalid(
            "REKEY-Limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        )),
    }
}

fn bad_cursor() -> Error {
    Error::invalid("REKEY-Cursr", "cursor is not one this listing handed out")
}

fn encode_cursor(parts: Value) -> String {
    URL_SAFE_NO_PAD.encode(parts.to_string())
}

/// The parts of a cursor of `tag` (`"e"` events, `"o"` outbox), after the tag.
fn decode_cursor(cursor: &str, tag: &str, parts: usize) -> Result<Vec<Value>, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad_cursor())?;
    let Ok(Value::Array(mut values)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(bad_cursor());
    };
    if values.len() != parts + 1 || values.first().and_then(Value::as_str) != Some(tag) {
        return Err(bad_cursor());
    }
    values.remove(0);
    Ok(values)
}

fn micros_of(value: &Value) -> Result<DateTime<Utc>, Error> {
    value
        .as_i64()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad_cursor)
}

fn text_of(value: &Value) -> Result<String, Error> {
    value.as_str().map(str::to_owned).ok_or_else(bad_cursor)
}

fn event_cursor(key: &EventKey) -> String {
    encode_cursor(json!([
        "e",
        key.at.timestamp_micros(),
        key.tenant_id.as_str(),
        key.aggregate_id,
        key.sequence
    ]))
}

fn event_key(cursor: &str) -> Result<EventKey, Error> {
    let parts = decode_cursor(cursor, "e", 4)?;
    Ok(EventKey {
        at: micros_of(&parts[0])?,
        tenant_id: TenantId::parse(&text_of(&parts[1])?).map_err(|_| bad_cursor())?,
        aggregate_id: text_of(&parts[2])?,
        sequence: parts[3].as_u64().ok_or_else(bad_cursor)?,
    })
}

fn outbox_cursor(key: &OutboxKey) -> String {
    encode_cursor(json!([
        "o",
        key.created_at.timestamp_micros(),
        key.tenant_id.as_str(),
        key.id.as_str()
    ]))
}

fn outbox_key(cursor: &str) -> Result<OutboxKey, Error> {
    let parts = decode_cursor(cursor, "o", 3)?;
    Ok(OutboxKey {
        created_at: micros_of(&parts[0])?,
        tenant_id: TenantId::parse(&text_of(&parts[1])?).map_err(|_| bad_cursor())?,
        id: MessageId::parse(&text_of(&parts[2])?).map_err(|_| bad_cursor())?,
    })
}

/// `rows` read with `limit + 1`: the page, and a cursor when the extra row shows more exist.
fn paged<T>(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(cursor) } else { None };
    Page {
        items: rows,
        next_cursor,
    }
}

impl Rekey {
    /// A page of outbox messages the caller may see, oldest first (SPEC §11).
    pub async fn outbox_for(
        &self,
        caller: &Caller,
        listing: &OutboxListing,
    ) -> Result<Page<OutboxMessage>, Error> {
        let scope = operator_scope(caller)?;
        let limit = page_limit(listing.limit)?;
        let after = listing.cursor.as_deref().map(outbox_key).transpose()?;
        let rows = self
            .store
            .outbox_page(&OutboxQuery {
                state: listing.state,
                tenant_id: scope,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(paged(rows, limit, |m| outbox_cursor(&OutboxKey::of(m))))
    }

    /// Retries a failed message of the caller's scope; the change is audited with the caller's
    /// token and address. Another tenant's message is "not found", as a missing one.
    pub async fn retry_outbox_for(&self, caller: &Caller, id: &str) -> Result<Retried, Error> {
        let scope = operator_scope(caller)?;
        let message = self.failed_message(id).await?;
        if scope.is_some_and(|own| own != message.tenant_id) {
            return Err(outbox_not_found());
        }
        self.retry_failed_message(&caller.actor(), caller.ip.clone(), message)
            .await
    }

    /// A page of the audit trail the caller may see, oldest first. A tenant admin reads its
    /// own tenant's events only: naming another tenant is PERMISSION_DENIED whether or not that
    /// tenant exists (as a v1 call naming another organization, SPEC §2), so nothing is
    /// learnt from it; a system token naming a tenant that does not exist gets an empty page.
    pub async fn events_for(
        &self,
        caller: &Caller,
        query: &EventQuery,
    ) -> Result<Page<Event>, Error> {
        let scope = operator_scope(caller)?;
        let limit = page_limit(query.limit)?;
        let after = query.cursor.as_deref().map(event_key).transpose()?;
        let named = query.tenant.as_deref().filter(|t| !t.is_empty());
        let tenant_id = match (scope, named) {
            (None, None) => None,
            (None, Some(named)) => match TenantId::parse(named) {
                Ok(id) => Some(id),
                // No tenant can have such an id.
                Err(_) => return Ok(Page::empty()),
            },
            (Some(own), None) => Some(own),
            (Some(own), Some(named)) if named == own.as_str() => Some(own),
            (Some(_), Some(_)) => return Err(Error::permission_denied()),
        };
        let rows = self
            .store
            .events(&EventFilter {
                tenant_id,
                aggregate_id: query.user.clone().filter(|u| !u.is_empty()),
                since: query.since,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(paged(rows, limit, |e| event_cursor(&EventKey::of(e))))
    }

    /// A tenant of the caller's scope, by id or cname (as the CLI's `--tenant`); another
    /// tenant is "not found", as a missing one.
    pub async fn tenant_for(&self, caller: &Caller, reference: &str) -> Result<Tenant, Error> {
        let scope = operator_scope(caller)?;
        let tenant = self.tenant_by_ref(reference).await?;
        match scope {
            Some(own) if own != tenant.id => Err(tenant_not_found()),
            _ => Ok(tenant),
        }
    }

    /// Changes settings of a tenant of the caller's scope by their names (the CLI's
    /// `rekey tenant set`, through the same [`Rekey::change_tenant_settings`]); audited with
    /// the caller's token and address. The tenant as stored afterwards.
    pub async fn change_tenant_settings_for(
        &self,
        caller: &Caller,
        reference: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<Tenant, Error> {
        let tenant = self.tenant_for(caller, reference).await?;
        self.change_tenant_settings(&caller.actor(), caller.ip.clone(), &tenant, changes)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let key = EventKey {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            tenant_id: TenantId::parse("t1").unwrap(),
            aggregate_id: "u\"1".to_owned(),
            sequence: 7,
        };
        assert_eq!(event_key(&event_cursor(&key)).unwrap(), key);
        let okey = OutboxKey {
            created_at: key.at,
            tenant_id: key.tenant_id.clone(),
            id: MessageId::parse("m1").unwrap(),
        };
        assert_eq!(outbox_key(&outbox_cursor(&okey)).unwrap(), okey);
        // A cursor of the other listing, or no cursor at all, is refused.
        assert!(outbox_key(&event_cursor(&key)).is_err());
        assert!(event_key(&outbox_cursor(&okey)).is_err());
        for junk in ["", "!!", "W10", "WyJlIl0"] {
            assert_eq!(event_key(junk).unwrap_err().id, "REKEY-Cursr", "{junk}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some(1)).unwrap(), 1);
        assert_eq!(page_limit(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(MAX_PAGE + 1)).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_exist() {
        let page = paged(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let page = paged(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(page.next_cursor, None);
    }
}
