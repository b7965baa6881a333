#!/usr/bin/env bash
# Installs what crates/rekey/tests/it/browser.rs drives: Debian's Chromium (/usr/bin/chromium;
# Playwright's own browser download does not work offline) and, from the committed
# package-lock.json, playwright-core and axe-core into tests/browser/node_modules. Re-running
# is cheap: each part is skipped while it is in place.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  log "Installing Debian's chromium"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

stamp=node_modules/.rekey-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "npm ci in tests/browser"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
else
  log "tests/browser/node_modules is up to date"
fi
