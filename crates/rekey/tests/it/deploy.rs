//! `deploy/` and the README's configuration table, checked against the code: the key list
//! comes from the settings type ([`rekey::config::all_keys`]) and each default from loading it
//! through [`Settings::load`], the loader the binary uses, so a key added to the code without
//! its documentation fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rekey::config::{all_keys, ConfigKey, Settings};

fn repo_file(relative: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    (path, text)
}

fn keys() -> Vec<ConfigKey> {
    all_keys().expect("the keys of the settings type")
}

/// What the binary's loader makes of `toml` (with this process's environment over it), as
/// `Debug` text: two configurations are the same when these are equal.
fn load(toml: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rekey.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load(Some(&path))
        .map(|settings| format!("{settings:?}"))
        .map_err(|err| format!("{err:#}"))
}

/// `key = value` in its TOML section, the value quoted when the key holds text.
fn toml_setting(key: &ConfigKey, value: &str) -> String {
    let value = if key.text {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_owned()
    };
    match key.toml() {
        ("", name) => format!("{name} = {value}\n"),
        (section, name) => format!("[{section}]\n{name} = {value}\n"),
    }
}

/// A Markdown table row's cells, `\|` kept inside its cell.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|');
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '|' if !escaped => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
        escaped = c == '\\';
    }
    cells.iter().map(|cell| cell.trim().to_owned()).collect()
}

/// The README's configuration table: environment name → default cell.
fn readme_table() -> Vec<(String, String)> {
    let (_, readme) = repo_file("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration\n"))
        .expect("a `## Configuration` section in README.md");
    let mut lines = section
        .lines()
        .skip_while(|line| cells(line) != ["key", "default", "meaning"]);
    assert!(
        lines.next().is_some(),
        "README.md: no `| key | default | meaning |` table under Configuration"
    );
    lines
        .skip(1) // | --- | --- | --- |
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells = cells(line);
            assert_eq!(cells.len(), 3, "README.md configuration row: {line}");
            let key = cells[0]
                .strip_prefix('`')
                .and_then(|k| k.strip_suffix('`'))
                .filter(|k| !k.contains('`'))
                .unwrap_or_else(|| panic!("README.md: one `REKEY_…` key per row: {line}"));
            (key.to_owned(), cells[1].clone())
        })
        .collect()
}

#[test]
fn the_readme_table_lists_every_key_with_the_codes_default() {
    let keys = keys();
    let table = readme_table();
    let mut rows = BTreeMap::new();
    for (env, default) in &table {
        assert!(
            rows.insert(env.as_str(), default.as_str()).is_none(),
            "README.md lists {env} twice"
        );
    }
    let missing: Vec<String> = keys
        .iter()
        .map(ConfigKey::env)
        .filter(|env| !rows.contains_key(env.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration table lacks {missing:?}"
    );
    let unknown: Vec<&str> = rows
        .keys()
        .copied()
        .filter(|env| !keys.iter().any(|k| k.env() == *env))
        .collect();
    assert!(
        unknown.is_empty(),
        "README.md lists keys the code does not accept: {unknown:?}"
    );

    let baseline = load("").unwrap();
    let mut checked = 0;
    for key in &keys {
        let env = key.env();
        let default = rows[env.as_str()];
        let value = if default == "empty" {
            Some(String::new())
        } else if let Some(value) = default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`'))
        {
            Some(value.to_owned())
        } else {
            assert!(
                default.starts_with("unset"),
                "README.md: the default of {env} is `value`, empty or unset…, not {default:?}"
            );
            assert!(
                key.optional,
                "README.md says {env} is unset by default, but the code always gives it a value"
            );
            None
        };
        if let Some(value) = value {
            let setting = toml_setting(key, &value);
            assert_eq!(
                load(&setting).unwrap_or_else(|err| panic!("{setting}: {err}")),
                baseline,
                "README.md: {value:?} is not the default of {env}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} scalar defaults checked");
}

/// One setting line of the example file, `key = value` or `# key = value`.
#[derive(Debug)]
struct ExampleLine {
    path: String,
    commented: bool,
    line: usize,
}

fn example_settings(text: &str) -> Vec<ExampleLine> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (commented, body) = match line.strip_prefix("# ") {
            Some(body) => (true, body),
            None => (false, line),
        };
        let Some((name, _)) = body.split_once(" = ") else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let path = if section.is_empty() {
            name.to_owned()
        } else {
            format!("{section}.{name}")
        };
        settings.push(ExampleLine {
            path,
            commented,
            line: index,
        });
    }
    settings
}

/// The example with the commented settings for which `uncomment` says yes made active.
fn uncommented(text: &str, settings: &[ExampleLine], uncomment: impl Fn(&str) -> bool) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for setting in settings {
        if setting.commented && uncomment(&setting.path) {
            let line = &mut lines[setting.line];
            *line = line.trim_start().trim_start_matches("# ").to_owned();
        }
    }
    lines.join("\n")
}

#[test]
fn the_example_configuration_has_every_key_and_the_codes_defaults() {
    let (path, text) = repo_file("deploy/rekey.example.toml");
    let keys = keys();
    let settings = example_settings(&text);

    // Every key once, and nothing else.
    for key in &keys {
        let found = settings.iter().filter(|s| s.path == key.path).count();
        assert_eq!(
            found, 1,
            "deploy/rekey.example.toml must show `{}` once (as `# {} = …` under [{}]), found {found}",
            key.path,
            key.toml().1,
            key.toml().0
        );
    }
    for setting in &settings {
        assert!(
            keys.iter().any(|k| k.path == setting.path),
            "deploy/rekey.example.toml line {}: `{}` is not a configuration key",
            setting.line + 1,
            setting.path
        );
    }

    // It loads as shipped, through the binary's loader, and with every example made active.
    let shipped = Settings::load(Some(&path))
        .unwrap_or_else(|err| panic!("deploy/rekey.example.toml: {err:#}"));
    assert!(shipped.public_url.starts_with("https://"));
    let as_shipped = load(&text).unwrap();
    load(&uncommented(&text, &settings, |_| true))
        .unwrap_or_else(|err| panic!("deploy/rekey.example.toml, all uncommented: {err}"));

    // A commented key that always has a value shows the code's default: making its line
    // active changes nothing. (Optional keys show examples.)
    for setting in settings.iter().filter(|s| s.commented) {
        if keys.iter().any(|k| k.path == setting.path && k.optional) {
            continue;
        }
        let one = uncommented(&text, &settings, |path| path == setting.path);
        assert_eq!(
            load(&one).unwrap(),
            as_shipped,
            "deploy/rekey.example.toml line {}: not the code's default of `{}`",
            setting.line + 1,
            setting.path
        );
    }
}

/// The instructions of a Containerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments (also inside a continued instruction) and blank lines.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .iter()
        .map(|instruction| {
            let (keyword, args) = instruction.split_once(' ').unwrap_or((instruction, ""));
            (keyword.to_uppercase(), args.trim().to_owned())
        })
        .collect()
}

/// The options (`--from=builder`) and the other words of an instruction's arguments.
fn options_and_words(args: &str) -> (Vec<&str>, Vec<&str>) {
    args.split_whitespace().partition(|w| w.starts_with("--"))
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| {
        panic!("Containerfile: use the exec form [\"…\"] for ENTRYPOINT and CMD: {args}")
    })
}

#[test]
fn the_containerfile_builds_in_one_stage_and_runs_the_binary_alone_unprivileged() {
    let (_, text) = repo_file("deploy/Containerfile");
    let all = instructions(&text);
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in all {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("Containerfile: FROM comes first")
            .push(instruction);
    }
    assert!(
        stages.len() >= 2,
        "Containerfile: a builder and a final stage"
    );

    let builder = &stages[0];
    let (_, from) = &builder[0];
    let words: Vec<&str> = from.split_whitespace().collect();
    let [image, as_kw, name] = words[..] else {
        panic!("Containerfile: the builder is `FROM image AS name`: {from}")
    };
    assert!(as_kw.eq_ignore_ascii_case("as"));
    assert!(image.contains("rust"), "builder image {image}");
    let builder_run: String = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, args)| args.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        builder_run.contains("cargo build --release --locked -p rekey"),
        "Containerfile: the builder runs `cargo build --release --locked -p rekey`"
    );

    let last = stages.last().unwrap();
    let base = &last[0].1;
    assert!(
        !base.split_whitespace().any(|w| w == name),
        "Containerfile: the final stage starts from a runtime image, not the builder"
    );
    let of = |keyword: &str| -> Vec<&str> {
        last.iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
            .collect()
    };

    // Runs as a user that is not root, from the start (the last USER wins).
    let user = *of("USER")
        .last()
        .expect("Containerfile: the final stage sets USER");
    let account = user.split(':').next().unwrap();
    assert!(
        !["root", "0"].contains(&account),
        "Containerfile: the final stage runs as {user}"
    );

    // Copies the built binary and nothing else: no ADD, no source tree.
    assert!(
        of("ADD").is_empty(),
        "Containerfile: no ADD in the final stage"
    );
    let copies = of("COPY");
    assert_eq!(
        copies.len(),
        1,
        "Containerfile: one COPY, of the binary: {copies:?}"
    );
    let (options, words) = options_and_words(copies[0]);
    assert!(
        options.contains(&format!("--from={name}").as_str()),
        "Containerfile: the final stage copies from {name} only: {copies:?}"
    );
    let [source, target] = words[..] else {
        panic!("Containerfile: one file copied: {copies:?}")
    };
    assert!(
        source.ends_with("/release/rekey")
            || builder_run.contains(&format!("target/release/rekey {source}")),
        "Containerfile: {source} is not the release binary"
    );

    // Starts the server with the binary it copied.
    let mut command = of("ENTRYPOINT")
        .last()
        .map(|args| exec_form(args))
        .unwrap_or_default();
    command.extend(
        of("CMD")
            .last()
            .map(|args| exec_form(args))
            .unwrap_or_default(),
    );
    assert_eq!(
        command.first().map(String::as_str),
        Some(target),
        "Containerfile: the entry point is the copied binary"
    );
    assert!(
        command.iter().any(|arg| arg == "serve"),
        "Containerfile: the image runs `serve`: {command:?}"
    );

    let env = of("ENV").join(" ");
    for setting in ["REKEY_DATA_DIR=/var/lib/rekey", "REKEY_LISTEN=0.0.0.0:8080"] {
        assert!(env.contains(setting), "Containerfile: ENV {setting}");
    }
    assert!(
        of("VOLUME").iter().any(|v| v.contains("/var/lib/rekey")),
        "Containerfile: VOLUME /var/lib/rekey"
    );
    assert!(
        of("EXPOSE")
            .iter()
            .any(|v| v.split_whitespace().any(|p| p == "8080")),
        "Containerfile: EXPOSE 8080"
    );
}

/// The unit's `Key=value` lines (comments dropped), in order.
fn unit_directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';', '[']))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// A systemd time span in seconds: `20`, `20s`, `1min`, `1min 30s`.
fn seconds(span: &str) -> u64 {
    span.split_whitespace()
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let n: u64 = digits
                .parse()
                .unwrap_or_else(|_| panic!("time span {span}"));
            match &part[digits.len()..] {
                "" | "s" | "sec" => n,
                "min" | "m" => n * 60,
                unit => panic!("time span {span}: unit {unit}"),
            }
        })
        .sum()
}

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let (_, text) = repo_file("deploy/rekey.service");
    let directives = unit_directives(&text);
    let values = |key: &str| -> Vec<&str> {
        directives
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let value = |key: &str| -> &str {
        values(key)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("deploy/rekey.service: {key}= is missing"))
    };

    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("UMask", "0077"),
        ("StateDirectory", "rekey"),
        ("StateDirectoryMode", "0700"),
        ("EnvironmentFile", "-/etc/rekey/rekey.env"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        (
            "ExecStart",
            "/usr/local/bin/rekey serve --config /etc/rekey/rekey.toml",
        ),
    ] {
        assert_eq!(value(key), expected, "deploy/rekey.service: {key}=");
    }
    assert_eq!(
        values("SystemCallFilter").first().copied(),
        Some("@system-service"),
        "deploy/rekey.service: SystemCallFilter=@system-service first (an allow list)"
    );
    assert!(values("Environment").contains(&"REKEY_DATA_DIR=/var/lib/rekey"));
    let user = values("User").last().copied().unwrap_or("");
    assert!(
        values("DynamicUser").last() == Some(&"yes") || !(user.is_empty() || user == "root"),
        "deploy/rekey.service: a dedicated user"
    );

    // Room for every connection, and a stop bound above the server's own.
    let defaults = Settings::default();
    let nofile: usize = value("LimitNOFILE").parse().expect("LimitNOFILE= a number");
    assert!(
        nofile >= 2 * defaults.max_connections,
        "LimitNOFILE={nofile} leaves too little room over max_connections"
    );
    let stop = seconds(value("TimeoutStopSec"));
    assert!(
        stop * 1000 > defaults.shutdown_timeout_ms + 2_000,
        "TimeoutStopSec={stop}s must exceed the shutdown timeout with some room"
    );

    // The flags of ExecStart are the binary's.
    let help = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));

    if !have_systemd_analyze() {
        eprintln!(
            "\n!!! systemd-analyze is not installed: deploy/rekey.service was checked for its \
             directives only, NOT verified by systemd (install Debian's `systemd`; \
             scripts/test.sh does) !!!\n"
        );
        return;
    }
    // `verify` on a copy that starts the binary just built (it checks that ExecStart exists).
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rekey.service");
    let binary = env!("CARGO_BIN_EXE_rekey");
    let copy = text.replace(
        "ExecStart=/usr/local/bin/rekey ",
        &format!("ExecStart={binary} "),
    );
    assert_ne!(copy, text);
    std::fs::write(&unit, copy).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("rekey.service"))
        .collect();
    assert!(
        about_ours.is_empty(),
        "systemd-analyze verify warns: {about_ours:#?}"
    );

    // And systemd's own rating of the sandbox: "OK" is below 5; keep it well under.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for rekey.service:"))
    {
        Some((_, rating)) => {
            let exposure: f64 = rating
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("exposure rating {rating}"));
            assert!(exposure <= 2.0, "systemd-analyze security: {rating}");
        }
        None => eprintln!(
            "systemd-analyze security --offline is not supported here; exposure not rated: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
