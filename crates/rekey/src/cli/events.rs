//! `rekey events`: the audit trail, one JSON object per line (or all in one with `--json`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use rekey_core::domain::Event;
use rekey_core::flows::Rekey;
use rekey_core::ports::store::EventFilter;
use serde_json::{json, Value};

use super::{core_err, Output};

/// `rekey events [--tenant T] [--user U] [--since TIME]`.
pub async fn show(
    rekey: &Rekey,
    out: &Output,
    tenant: Option<String>,
    user: Option<String>,
    since: Option<String>,
) -> anyhow::Result<()> {
    let tenant_id = match tenant {
        Some(t) => Some(rekey.tenant_by_ref(&t).await.map_err(core_err)?.id),
        None => None,
    };
    let since = since
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("--since {s:?} is not RFC 3339"))
        })
        .transpose()?;
    let filter = EventFilter {
        tenant_id,
        aggregate_id: user,
        since,
        after: None,
        limit: 10_000,
    };
    let events = rekey.events(&filter).await.map_err(core_err)?;
    let items: Vec<Value> = events.iter().map(event_json).collect();
    if out.json {
        println!("{}", json!({ "events": items }));
    } else {
        for item in items {
            println!("{item}");
        }
    }
    Ok(())
}

fn event_json(e: &Event) -> Value {
    json!({
        "tenantId": e.tenant_id.as_str(),
        "aggregateId": e.aggregate_id,
        "sequence": e.sequence,
        "kind": e.kind,
        "actor": e.actor,
        "ip": e.ip,
        "at": e.at.to_rfc3339(),
        "payload": e.payload,
    })
}
