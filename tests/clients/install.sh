#!/usr/bin/env bash
# Installs the published ZITADEL clients that crates/rekey/tests/it/clients.rs drives:
#   - npm `@zitadel/client` and `@zitadel/node` into tests/clients/node/node_modules (`npm ci`
#     from the committed package-lock.json);
#   - PyPI `zitadel-client` into the virtualenv tests/clients/python/.venv (pinned
#     requirements.txt).
# Needs node >= 20 with npm, and python3 >= 3.9 with pip. Re-running is cheap: each part is
# skipped while its lock file is unchanged.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '==> %s\n' "$*" >&2; }
sum() { sha256sum "$1" | cut -d' ' -f1; }

# --- Node ---------------------------------------------------------------------------------
node_stamp=node/node_modules/.rekey-lock-sha256
want=$(sum node/package-lock.json)
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$want" ]; then
  log "npm ci in tests/clients/node"
  # --ignore-scripts: nothing here needs an install script (protobufjs' only prints hints).
  (cd node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" >"$node_stamp"
else
  log "tests/clients/node/node_modules is up to date"
fi

# --- Python -------------------------------------------------------------------------------
venv=python/.venv
py_stamp=$venv/.rekey-requirements-sha256
want=$(sum python/requirements.txt)
if [ "$(cat "$py_stamp" 2>/dev/null)" != "$want" ]; then
  log "virtualenv tests/clients/python/.venv with requirements.txt"
  rm -rf "$venv"
  if python3 -m venv "$venv" 2>/dev/null && [ -x "$venv/bin/pip" ]; then
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r python/requirements.txt
  else
    # Debian without python3-venv has no ensurepip: make the venv without pip and let the
    # system pip install into it.
    rm -rf "$venv"
    python3 -m venv --without-pip "$venv"
    python3 -m pip --python "$venv/bin/python" install --disable-pip-version-check --quiet \
      -r python/requirements.txt
  fi
  echo "$want" >"$py_stamp"
else
  log "tests/clients/python/.venv is up to date"
fi
