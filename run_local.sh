#!/usr/bin/env bash
# Set up everything on a fresh machine and run Spool on the local stack:
#   1. .venv with pinned dependencies (scripts/bootstrap.sh)
#   2. Kafka (KRaft), PostgreSQL and an S3 endpoint on 127.0.0.1, no Docker (scripts/stack.py)
#   3. sample data through the spool job (scripts/demo.py)
# Safe to run again: every step is idempotent. Stop the services with: scripts/services.sh stop
set -euo pipefail
cd "$(dirname "$0")"

./scripts/bootstrap.sh
.venv/bin/python scripts/stack.py start
eval "$(.venv/bin/python scripts/stack.py env)"
.venv/bin/python scripts/demo.py

echo
echo "Spool's local stack is running:"
.venv/bin/python scripts/stack.py status kafka postgres s3
echo
echo "Connection settings (eval \"\$(scripts/services.sh env)\" exports them):"
.venv/bin/python scripts/stack.py env | sed 's/^/  /'
echo
echo "Stop everything with: scripts/services.sh stop"
