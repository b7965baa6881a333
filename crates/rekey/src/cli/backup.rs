//! `rekey backup FILE`: a consistent copy of the embedded SQLite database, taken while the
//! server runs. It needs neither the flows nor the keys, so it does not build them: it opens
//! the database read-only and applies no migration (a new binary can back up a database before
//! its first start migrates it). For PostgreSQL it names the usual tools and fails.

use std::path::Path;

use serde_json::json;

use super::Output;
use crate::config::Settings;

/// The key files `rekey serve` generates into the data directory when no keys are configured.
const KEY_FILES: [&str; 2] = ["code_hmac.keys", "outbox.keys"];

pub async fn run(settings: &Settings, out: &Output, file: &Path) -> anyhow::Result<()> {
    let report = rekey_store::backup(&settings.database_url(), file).await?;
    tracing::info!(
        source = %report.source.display(),
        file = %file.display(),
        bytes = report.bytes,
        schema_version = report.schema_version,
        "backup written and checked"
    );
    // The database alone cannot open the codes and the queued messages it holds.
    let generated: Vec<String> = KEY_FILES
        .iter()
        .zip([&settings.keys.code_hmac, &settings.keys.outbox])
        .filter(|(_, configured)| configured.is_none())
        .map(|(name, _)| settings.data_dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !generated.is_empty() {
        crate::logging::notice(
            settings.log_format,
            &format!(
                "the keys are not in the backup; keep a copy of {} as well (they change only when rotated)",
                generated.join(" and ")
            ),
        );
    }
    out.print(
        &file.display().to_string(),
        json!({
            "file": file.display().to_string(),
            "source": report.source.display().to_string(),
            "bytes": report.bytes,
            "schema_version": report.schema_version,
        }),
    );
    Ok(())
}
