#!/usr/bin/env bash
# Install the Node test peers (MCP reference servers, the conformance suite and a Node 22
# runtime) pinned by tests/node/package-lock.json into tests/node/node_modules.
#
# Idempotent: a stamp holding the lock file's hash skips the install when nothing changed.
# The npm cache lives in the clone's ignored .cache/ folder. Prints the Node 22 binary path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg="$root/tests/node"
stamp="$pkg/node_modules/.mcpwall-lock.sha256"
node22="$pkg/node_modules/.bin/node"

if ! command -v npm >/dev/null 2>&1; then
  echo "test-deps: npm is required (any version) to install the pinned test peers" >&2
  exit 1
fi

want="$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"

if [[ "$want" != "$have" || ! -x "$node22" ]]; then
  echo "test-deps: installing pinned Node test peers into tests/node/node_modules" >&2
  mkdir -p "$root/.cache/npm"
  (cd "$pkg" && npm ci --cache "$root/.cache/npm" --prefer-offline --no-audit --no-fund \
      --loglevel=error >&2)
  echo "$want" >"$stamp"
fi

version="$("$node22" --version)"
if [[ "$version" != v22.* ]]; then
  echo "test-deps: expected Node 22 at $node22, found $version" >&2
  exit 1
fi
echo "$node22"
