#!/usr/bin/env bash
# Create or refresh the project's venv (.venv) with pinned runtime + dev dependencies and
# Spool itself installed in editable mode. Re-runs are cheap: pip runs only when a
# requirements file or setup.py changed. pip's download cache lives in var/cache/pip.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  echo "error: Spool needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  echo "[bootstrap] creating .venv with $($py --version)" >&2
  "$py" -m venv .venv
fi

stamp=.venv/.spool-deps
want=$(cat requirements.txt requirements-dev.txt setup.py | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing pinned dependencies into .venv ..." >&2
  mkdir -p var/cache/pip
  .venv/bin/python -m pip install -q --disable-pip-version-check --cache-dir var/cache/pip \
    -r requirements-dev.txt -e .
  echo "$want" > "$stamp"
fi
