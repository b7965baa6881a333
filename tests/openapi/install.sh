#!/usr/bin/env bash
# Installs the external OpenAPI checkers that crates/rekey/tests/it/openapi.rs runs against the
# served /openapi.json: PyPI `openapi-spec-validator` and `schemathesis` (pinned in
# requirements.txt) into the virtualenv tests/openapi/.venv. Needs python3 >= 3.10 with pip.
# Re-running is cheap: skipped while requirements.txt is unchanged.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '==> %s\n' "$*" >&2; }
sum() { sha256sum "$1" | cut -d' ' -f1; }

venv=.venv
stamp=$venv/.rekey-requirements-sha256
want=$(sum requirements.txt)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "virtualenv tests/openapi/.venv with requirements.txt"
  rm -rf "$venv"
  if python3 -m venv "$venv" 2>/dev/null && [ -x "$venv/bin/pip" ]; then
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r requirements.txt
  else
    # Debian without python3-venv has no ensurepip: make the venv without pip and let the
    # system pip install into it.
    rm -rf "$venv"
    python3 -m venv --without-pip "$venv"
    python3 -m pip --python "$venv/bin/python" install --disable-pip-version-check --quiet \
      -r requirements.txt
  fi
  echo "$want" >"$stamp"
else
  log "tests/openapi/.venv is up to date"
fi
