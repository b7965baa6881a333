//! The Prometheus text exposition format (0.0.4): `# HELP`, `# TYPE`, then one line per series,
//! label values escaped (`\`, `"`, newline). Families with no series are left out, except the
//! fixed ones (their zeros matter to `rate()` and alerts).

use std::fmt::Write;

use rekey_core::flows::Stats;

use super::requests::{Code, Snapshot, BUCKETS};

/// A family being written: its header once, then its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Seconds as Prometheus reads them (`0.5`, `1`, `2.5`).
struct Seconds(f64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub(crate) fn render(
    requests: &[Snapshot],
    stats: &Stats,
    deliveries: &[(&'static str, &'static str, u64)],
) -> String {
    let mut out = Out {
        text: String::with_capacity(8 * 1024),
    };

    out.family(
        "rekey_build_info",
        "gauge",
        "Always 1; the version of the running Rekey as a label.",
    );
    out.sample(
        "rekey_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    if !requests.is_empty() {
        out.family(
            "rekey_requests_total",
            "counter",
            "Requests answered, by face, operation (RPC or route of the table) and code (HTTP status; gRPC code name for gRPC and gRPC-Web).",
        );
        for snap in requests {
            for (key, count) in &snap.codes {
                let code = key.map_or("other".into(), Code::label);
                out.sample(
                    "rekey_requests_total",
                    &[
                        ("face", snap.face),
                        ("operation", snap.operation),
                        ("code", &code),
                    ],
                    count,
                );
            }
        }
        const DURATION: &str = "rekey_request_duration_seconds";
        out.family(
            DURATION,
            "histogram",
            "Time from a request's arrival to its response head, by face and operation.",
        );
        for snap in requests {
            let labels = [("face", snap.face), ("operation", snap.operation)];
            for (i, count) in snap.buckets.iter().enumerate() {
                let le = BUCKETS
                    .get(i)
                    .map_or("+Inf".to_owned(), |b| Seconds(*b).to_string());
                out.sample(
                    "rekey_request_duration_seconds_bucket",
                    &[labels[0], labels[1], ("le", &le)],
                    count,
                );
            }
            out.sample(
                "rekey_request_duration_seconds_sum",
                &labels,
                Seconds(snap.sum_seconds),
            );
            out.sample(
                "rekey_request_duration_seconds_count",
                &labels,
                snap.buckets.last().copied().unwrap_or(0),
            );
        }
    }

    if let Ok(outbox) = &stats.outbox {
        out.family(
            "rekey_outbox_messages",
            "gauge",
            "Outbox messages waiting for delivery (pending) or parked after their last attempt (failed).",
        );
        out.sample(
            "rekey_outbox_messages",
            &[("state", "pending")],
            outbox.pending,
        );
        out.sample(
            "rekey_outbox_messages",
            &[("state", "failed")],
            outbox.failed,
        );
        out.family(
            "rekey_outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest pending outbox message; 0 when none is pending.",
        );
        out.sample(
            "rekey_outbox_oldest_pending_age_seconds",
            &[],
            Seconds(stats.oldest_pending_age_secs()),
        );
    }

    if !deliveries.is_empty() {
        out.family(
            "rekey_deliveries_total",
            "counter",
            "Outbox delivery attempts by channel and outcome (sent, retry, parked).",
        );
        for (channel, outcome, count) in deliveries {
            out.sample(
                "rekey_deliveries_total",
                &[("channel", channel), ("outcome", outcome)],
                count,
            );
        }
    }

    let pool = &stats.hash_pool;
    for (name, kind, help, value) in [
        (
            "rekey_hash_pool_busy",
            "gauge",
            "Password hashes running now.",
            pool.busy,
        ),
        (
            "rekey_hash_pool_queued",
            "gauge",
            "Password hashes admitted and waiting for a thread.",
            pool.queued,
        ),
        (
            "rekey_hash_pool_refused_total",
            "counter",
            "Password hashes refused because the pool and its queue were full (429 / RESOURCE_EXHAUSTED).",
            pool.refused,
        ),
        (
            "rekey_hash_pool_threads",
            "gauge",
            "Threads of the password hash pool.",
            pool.threads,
        ),
        (
            "rekey_hash_pool_queue_limit",
            "gauge",
            "Password hashes that may wait for a thread (REKEY_ARGON2__QUEUE).",
            pool.queue,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }

    out.family(
        "rekey_rate_limit_refusals_total",
        "counter",
        "Requests refused by a rate limit (SPEC §10), by limit; includes unauthenticated requests answered as if sent.",
    );
    for (limit, count) in &stats.rate_limit_refusals {
        out.sample(
            "rekey_rate_limit_refusals_total",
            &[("limit", limit.as_str())],
            count,
        );
    }

    let db = &stats.pools;
    out.family(
        "rekey_db_pool_connections",
        "gauge",
        "Open database connections by state (idle, in_use).",
    );
    out.sample("rekey_db_pool_connections", &[("state", "idle")], db.idle);
    out.sample(
        "rekey_db_pool_connections",
        &[("state", "in_use")],
        db.in_use,
    );
    out.family(
        "rekey_db_pool_max_connections",
        "gauge",
        "The most database connections the pools may open.",
    );
    out.sample("rekey_db_pool_max_connections", &[], db.max);
    out.family(
        "rekey_db_errors_total",
        "counter",
        "Database operations that failed (unavailable, timed out, or unreadable data).",
    );
    out.sample("rekey_db_errors_total", &[], db.errors);

    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Out {
            text: String::new(),
        };
        out.sample("x", &[("a", "q\"b\\c\nd")], 1);
        assert_eq!(out.text, "x{a=\"q\\\"b\\\\c\\nd\"} 1\n");
        assert_eq!(Seconds(0.005).to_string(), "0.005");
        assert_eq!(Seconds(10.0).to_string(), "10");
    }
}
