#!/usr/bin/env bash
# Start, stop and inspect the local services: scripts/services.sh start|stop|status|env [SERVICE...]
# A thin wrapper that runs scripts/stack.py with the project's venv (see its --help).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/../.venv/bin/python" ]; then
  "$here/bootstrap.sh"
fi
exec "$here/../.venv/bin/python" "$here/stack.py" "$@"
