#!/usr/bin/env bash
# Build Beam's Prism runner (Go) at the pinned Beam version into var/bin/prism, once.
# The Go module cache stays under var/cache/go, so a rebuild needs no download.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(grep -oE 'apache-beam\[aws\]==[0-9.]+' requirements.txt | cut -d= -f3)
out=var/bin/prism
stamp=var/bin/.prism-version
if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build Prism (apt-get install golang)" >&2; exit 1; }
echo "[prism] building Prism v$version with go install (cached in var/cache/go) ..." >&2
mkdir -p var/bin var/cache/go
(cd /tmp && GOPATH="$OLDPWD/var/cache/go" GOBIN="$OLDPWD/var/bin" GOFLAGS=-modcacherw \
   go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$version")
echo "$version" > "$stamp"
