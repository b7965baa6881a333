#!/usr/bin/env bash
# Runs Rekey's whole test suite on a fresh machine: makes sure what the tests need is there
# (PostgreSQL, systemd-analyze, promtool), then the quality gates and every test, against SQLite
# and PostgreSQL, then a short run of each fuzz target (scripts/fuzz-smoke.sh).
#
#   scripts/test.sh
#
# Environment: REKEY_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

export REKEY_TEST_DATABASE_URL="${REKEY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

pg_ready() {
  timeout 5 bash -c '</dev/tcp/127.0.0.1/5432' 2>/dev/null
}

ensure_postgres() {
  if pg_ready; then
    log "PostgreSQL is running on 127.0.0.1:5432"
    return
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "Installing PostgreSQL (Debian package)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Local test server: trust connections from loopback, as the tests connect without a password.
  if ! grep -q "rekey-tests" "$hba"; then
    as_root sh -c "printf '%s\n' '# rekey-tests' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' | cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba'"
  fi
  log "Starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "PostgreSQL did not come up" >&2; exit 1; }
  as_root su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" || true
}

ensure_postgres

# crates/rekey/tests/it/deploy.rs verifies deploy/rekey.service with `systemd-analyze verify`.
ensure_systemd_analyze() {
  if command -v systemd-analyze >/dev/null 2>&1; then
    log "systemd-analyze is installed"
    return
  fi
  log "Installing systemd-analyze (Debian package systemd)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
}

ensure_systemd_analyze

log "Installing the published ZITADEL clients (tests/clients/install.sh)"
tests/clients/install.sh

log "Installing Chromium and the browser-test tools (tests/browser/install.sh)"
tests/browser/install.sh

log "Installing the OpenAPI checkers (tests/openapi/install.sh)"
tests/openapi/install.sh

log "Installing promtool for the /metrics tests (tests/metrics/install.sh)"
tests/metrics/install.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (SQLite and PostgreSQL)"
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --no-fail-fast -- --test-threads="${REKEY_TEST_THREADS:-4}"

log "fuzz smoke (scripts/fuzz-smoke.sh)"
scripts/fuzz-smoke.sh

log "all tests passed"
