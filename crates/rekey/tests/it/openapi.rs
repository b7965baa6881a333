//! The served `/openapi.json` checked by external tools against a running `rekey serve`:
//! PyPI `openapi-spec-validator` validates the document, and `schemathesis` generates requests
//! from it (a system token, a bounded number of examples per operation) and checks that no
//! answer is a 5xx, that every status is documented and every JSON answer matches its schema.
//! The tools live in `tests/openapi/.venv` (installed by `tests/openapi/install.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{DbKind, Install};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/openapi/.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run tests/openapi/install.sh",
        path.display()
    );
    path
}

/// Runs a tool to completion (at most [`RUN_TIMEOUT`]); returns (success, stdout + stderr).
fn run(mut command: Command, dir: &Path, tag: &str) -> (bool, String) {
    let out_path = dir.join(format!("{tag}.out"));
    let mut child = command
        .env("NO_COLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&out_path)
                .unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), output),
        None => panic!("{tag} timed out after {RUN_TIMEOUT:?}:\n{output}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_and_the_service_conforms_to_it() {
    let validator = tool("openapi-spec-validator");
    let schemathesis = tool("schemathesis");
    let install = Install::new(DbKind::Sqlite).await;
    install.add_tenant("Acme", "acme");
    // Real users (and the tenant, by cname, for the operations API's settings routes), so
    // generated calls also reach the operations past "not found" (and their successful
    // answers are checked against the document).
    let users: Vec<String> = ["ada", "bob", "cy"]
        .iter()
        .map(|name| {
            install.add_user(
                "acme",
                &format!("{name}@acme.example"),
                &["--password", "Correct-Horse-Battery-9"],
            )
        })
        .collect();
    let token = install.stdout(&["token", "create", "--role", "system"]);
    let server = install.serve();
    let dir = install.data_path();

    let doc = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc_path = dir.join("openapi.json");
    std::fs::write(&doc_path, &doc).unwrap();

    // (a) The document is valid OpenAPI 3.1.
    let mut command = Command::new(&validator);
    command.arg(&doc_path);
    let (ok, output) = run(command, dir, "openapi-spec-validator");
    assert!(ok, "openapi-spec-validator:\n{output}");

    // (b) The service answers as the document says.
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openapi/schemathesis.toml");
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[dictionaries.users]\nvalues = {users:?}\n\n\
             [dictionaries.tenants]\nvalues = [\"acme\"]\n\n[parameters]\n\
             \"path.user_id\" = {{ dictionary = \"users\", probability = 0.5 }}\n\
             \"path.id\" = {{ dictionary = \"tenants\", probability = 0.5 }}\n",
            std::fs::read_to_string(&committed).unwrap()
        ),
    )
    .unwrap();
    let schemathesis_run = |seed: &str| {
        let mut command = Command::new(&schemathesis);
        command
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(&doc_path)
            .args(["--url", &server.base])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "8"])
            // The whole run's budget: on a loaded 2-core machine the coverage phase alone took 34 s
            // of a 30 s budget and left no time for fuzzing.
            .args(["--max-time", "60"])
            .args(["--seed", seed])
            .args(["--workers", "2"])
            .args(["--request-timeout", "10"])
            .arg("--no-shrink")
            // Hypothesis' health checks judge the generator (slow or much-filtered data), not
            // the service.
            .args(["--suppress-health-check", "all"]);
        run(command, dir, "schemathesis")
    };
    let (mut ok, mut output) = schemathesis_run("1");
    if !ok && only_generator_crashes(&output) {
        // Schemathesis 4.32 sometimes crashes inside its own coverage generator (hypothesis
        // `Unsatisfiable` on a composed schema, reported as "Inconsistent results" — seen on
        // CI for POST /v2/users/{user_id}/password); that says nothing about the service, so
        // the run is repeated once with another seed. A real finding is never retried.
        println!("schemathesis crashed in its generator; once more with another seed:\n{output}");
        (ok, output) = schemathesis_run("2");
    }
    // Shown with --nocapture: what was covered.
    println!("{output}");
    assert!(
        ok,
        "schemathesis found problems:\n{output}\n--- server warnings and errors\n{}",
        problems(&server.stderr())
    );
    let log = server.stderr();
    let reached = log
        .lines()
        .filter(|l| users.iter().any(|u| l.contains(&format!("/users/{u}"))))
        // `status=200`, maybe with colour codes around the `=`.
        .filter(|l| l.contains("status") && (l.contains("=200 ") || l.contains("m200 ")))
        .count();
    assert!(
        reached > 0,
        "no generated call succeeded on a real user: successful answers went unchecked"
    );
    let settings = log
        .lines()
        .filter(|l| l.contains("/rekey/v1/tenants/acme/settings"))
        .filter(|l| l.contains("status") && (l.contains("=200 ") || l.contains("m200 ")))
        .count();
    assert!(
        settings > 0,
        "no generated call read or changed the real tenant's settings"
    );
}

/// The server log's warnings and errors (the request lines would drown them).
/// Whether a failed schemathesis run reported only its own runtime errors: no failed check
/// (the FAILURES section), and every entry of the ERRORS section a "Runtime Error".
fn only_generator_crashes(output: &str) -> bool {
    let Some((_, errors)) = output.split_once("= ERRORS =") else {
        return false;
    };
    let entries = errors
        .lines()
        .filter(|l| l.starts_with("___") && l.trim_end().ends_with("___"))
        .count();
    let runtime = errors
        .lines()
        .filter(|l| l.trim() == "Runtime Error")
        .count();
    !output.contains("= FAILURES =") && entries > 0 && entries == runtime
}

#[test]
fn only_generator_crashes_are_told_from_findings() {
    let crash = "x\n===== ERRORS =====\n____ POST /v2/users/{user_id}/password ____\nRuntime Error\n\nInconsistent results\n";
    assert!(only_generator_crashes(crash));
    let finding = "===== FAILURES =====\n____ POST /a ____\n1. Server error\n===== ERRORS =====\n____ POST /b ____\nRuntime Error\n";
    assert!(!only_generator_crashes(finding));
    let other_error = "===== ERRORS =====\n____ POST /b ____\nNetwork Error\n";
    assert!(!only_generator_crashes(other_error));
    assert!(!only_generator_crashes("all passed"));
}

fn problems(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .collect::<Vec<_>>()
        .join("\n")
}
