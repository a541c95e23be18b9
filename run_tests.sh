#!/usr/bin/env bash
# The whole test suite on a fresh machine: venv and pinned dependencies, the local services
# (Kafka, PostgreSQL, S3 on 127.0.0.1, no Docker), ruff, then pytest (unit, integration, e2e).
# Extra arguments go to pytest, e.g. ./run_tests.sh tests/unit -k naming
# Services this script started are stopped at the end; SPOOL_KEEP_STACK=1 keeps them.
set -euo pipefail
cd "$(dirname "$0")"

./scripts/bootstrap.sh
started=$(mktemp)
cleanup() {
  if [ "${SPOOL_KEEP_STACK:-0}" != 1 ] && [ -s "$started" ]; then
    .venv/bin/python scripts/stack.py stop $(cat "$started") || true
  fi
  rm -f "$started"
}
trap cleanup EXIT
.venv/bin/python scripts/stack.py start --started-file "$started"
./scripts/build_prism.sh   # Beam's Prism runner for the streaming tests (cached in var/)
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
