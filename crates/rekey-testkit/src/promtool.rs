//! `promtool check metrics`, the Prometheus project's own checker of the text exposition format
//! and its naming conventions, on a scraped `/metrics` body. `tests/metrics/install.sh` installs
//! it (Debian package `prometheus`); a missing promtool fails the test, never skips it.

use std::io::Write;
use std::process::{Command, Stdio};

/// Panics with promtool's findings unless `text` passes `promtool check metrics`.
pub fn check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("promtool not runnable ({err}): install it with tests/metrics/install.sh")
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics refused the scrape:\n{}{}\n--- scraped text ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
