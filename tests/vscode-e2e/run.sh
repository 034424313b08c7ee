#!/bin/bash
# End-to-end test of the VS Code extension in a real VS Code: code-server
# 4.99.4 (VS Code 1.99, from npm) in Debian's headless Chromium, driven by
# playwright-core (e2e.js). Installs what is missing, packages the
# extension with the freshly built rseqdbg, installs the .vsix, debugs the
# full_tables fixture through the workbench and saves screenshots in
# tests/vscode-e2e/artifacts/. Exits non-zero on any failure.
#
# Environment: RSEQDBG_E2E_CACHE (code-server install, default
# ~/.cache/rseqdbg-vscode-e2e), RSEQDBG_E2E_KEEP=1 keeps the scratch dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EXT=$REPO/vscode-extension
CACHE=${RSEQDBG_E2E_CACHE:-$HOME/.cache/rseqdbg-vscode-e2e}
ART=$HERE/artifacts
T0=$(date +%s)
step() { echo "[e2e $(($(date +%s) - T0))s] $*"; }

# Debian packages: Chromium, and what code-server's native modules build with.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v rg >/dev/null || need+=(ripgrep)
command -v make >/dev/null && command -v g++ >/dev/null || need+=(build-essential)
command -v python3 >/dev/null || need+=(python3)
[ -e /usr/include/gssapi/gssapi.h ] || need+=(libkrb5-dev)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

step "code-server into $CACHE"
mkdir -p "$CACHE"
"$HERE/install-code-server.sh" "$CACHE/code-server" >"$CACHE/install.log" 2>&1 || { tail -50 "$CACHE/install.log"; exit 1; }
CS=$CACHE/code-server/node_modules/.bin/code-server

step "playwright-core, extension package"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$EXT" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent package >/dev/null)
VSIX=$EXT/rseqdbg-linux-x64.vsix
"$EXT/bin/rseqdbg" dap --help >/dev/null 2>&1 || { echo "the bundled rseqdbg has no dap subcommand: nothing to debug with" >&2; exit 1; }

# A scratch workspace: the fixture's sources, built there (so the debug
# info names files inside the workspace), and a launch.json.
SCRATCH=$(mktemp -d /tmp/rseqdbg-e2e.XXXXXX)
WS=$SCRATCH/workspace
STATE=$SCRATCH/state
mkdir -p "$WS/.vscode" "$STATE/user-data/User" "$STATE/extensions" "$STATE/xdg"
cp "$REPO/tests/fixtures/"{Makefile,full_tables.c,fixture_common.c,rseq_fixture.h} "$WS/"
make -s -C "$WS" build/full_tables
cat >"$WS/.vscode/launch.json" <<'JSON'
{
  "version": "0.2.0",
  "configurations": [
    {
      "type": "rseqdbg",
      "request": "launch",
      "name": "full_tables",
      "program": "${workspaceFolder}/build/full_tables",
      "args": ["1", "100", "--main"],
      "cwd": "${workspaceFolder}"
    }
  ]
}
JSON
cat >"$STATE/user-data/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none", "workbench.tips.enabled": false, "telemetry.telemetryLevel": "off",
  "extensions.autoCheckUpdates": false, "extensions.autoUpdate": false, "update.mode": "none",
  "security.workspace.trust.enabled": false, "workbench.enableExperiments": false,
  "debug.openDebug": "openOnDebugBreak", "debug.internalConsoleOptions": "openOnSessionStart",
  "files.hotExit": "off", "window.restoreWindows": "none"
}
JSON

PGID=""
cleanup() {
  rc=$?
  if [ -n "$PGID" ]; then kill -TERM -- "-$PGID" 2>/dev/null || true; sleep 0.5; kill -KILL -- "-$PGID" 2>/dev/null || true; fi
  if [ -d "$ART" ]; then
    cp "$STATE/server.log" "$ART/code-server.log" 2>/dev/null || true
    cp -r "$STATE/user-data/logs" "$ART/vscode-logs" 2>/dev/null || true
  fi
  if [ "${RSEQDBG_E2E_KEEP:-}" = 1 ]; then echo "kept $SCRATCH"; else rm -rf "$SCRATCH"; fi
  step "done, exit $rc"
  exit $rc
}
trap cleanup EXIT INT TERM

export XDG_CONFIG_HOME=$STATE/xdg/config XDG_DATA_HOME=$STATE/xdg/data XDG_CACHE_HOME=$STATE/xdg/cache XDG_STATE_HOME=$STATE/xdg/state
CS_ARGS=(--auth none --disable-telemetry --disable-update-check --disable-workspace-trust
  --disable-getting-started-override --user-data-dir "$STATE/user-data" --extensions-dir "$STATE/extensions")
step "install $VSIX"
"$CS" "${CS_ARGS[@]}" --install-extension "$VSIX" >"$STATE/install.log" 2>&1 || { cat "$STATE/install.log"; exit 1; }

PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
step "code-server on 127.0.0.1:$PORT"
setsid "$CS" "${CS_ARGS[@]}" --bind-addr "127.0.0.1:$PORT" >"$STATE/server.log" 2>&1 &
PGID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$STATE/server.log"; exit 1; }

rm -rf "$ART" && mkdir -p "$ART"
step "workbench"
RSEQ_LINE=$(grep -n '/\* RSEQ-LINE \*/' "$WS/full_tables.c" | cut -d: -f1)
MAIN_LINE=$(grep -n 'return fixture_main(' "$WS/full_tables.c" | cut -d: -f1)
URL="http://127.0.0.1:$PORT" WORKSPACE=$WS STATE=$STATE ARTIFACTS=$ART RSEQ_LINE=$RSEQ_LINE MAIN_LINE=$MAIN_LINE \
  timeout 240 node "$HERE/e2e.js"
