//! `rekey outbox …`: list the queued and failed messages, put a failed one back in the queue.

use rekey_core::domain::{OutboxMessage, OutboxState};
use rekey_core::flows::Rekey;
use rekey_core::flows::Retried;
use serde_json::{json, Value};

use super::{core_err, Output};

/// `rekey outbox list [--failed]`: one tab-separated line per message, or one JSON object.
pub async fn list(rekey: &Rekey, out: &Output, failed: bool) -> anyhow::Result<()> {
    let state = failed.then_some(OutboxState::Failed);
    let messages = rekey.list_outbox(state, 1000).await.map_err(core_err)?;
    let items: Vec<Value> = messages.iter().map(outbox_json).collect();
    if out.json {
        println!("{}", json!({ "messages": items }));
    } else {
        for m in &messages {
            println!(
                "{}\t{}\t{}\t{}\tattempts={}\t{}",
                m.id,
                m.state.as_str(),
                m.channel.as_str(),
                m.kind.as_str(),
                m.attempts,
                m.last_error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `rekey outbox retry ID`: prints the id of the message now pending (a new one when the old
/// one had to be reissued).
pub async fn retry(rekey: &Rekey, out: &Output, id: &str) -> anyhow::Result<()> {
    match rekey
        .retry_outbox_message("cli", id)
        .await
        .map_err(core_err)?
    {
        Retried::Requeued { id } => {
            out.print(id.as_str(), json!({ "id": id, "state": "pending" }));
        }
        Retried::Reissued { id: new } => {
            out.print(
                new.as_str(),
                json!({ "id": new, "state": "pending", "reissued_from": id }),
            );
        }
    }
    Ok(())
}

fn outbox_json(m: &OutboxMessage) -> Value {
    json!({
        "id": m.id,
        "tenantId": m.tenant_id.as_str(),
        "userId": m.user_id.as_str(),
        "channel": m.channel.as_str(),
        "kind": m.kind.as_str(),
        "state": m.state.as_str(),
        "attempts": m.attempts,
        "lastError": m.last_error,
        "createdAt": m.created_at.to_rfc3339(),
    })
}
