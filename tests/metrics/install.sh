#!/usr/bin/env bash
# Installs promtool, which the /metrics tests (crates/rekey-api/tests/it/metrics.rs,
# crates/rekey/tests/it/metrics.rs) run as `promtool check metrics` on a scrape. Debian ships it
# in the `prometheus` package; in a container without an init system the package's server is
# not started. Re-running is cheap: nothing is done while promtool is on the PATH.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v promtool >/dev/null 2>&1; then
  log "promtool is installed ($(promtool --version 2>&1 | head -n 1))"
  exit 0
fi
log "Installing promtool (Debian package prometheus)"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null 2>&1 || { echo "promtool still missing after installing prometheus" >&2; exit 1; }
