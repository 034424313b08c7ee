#!/bin/sh
# Installs code-server 4.99.4 (VS Code 1.99, the last line that runs on
# node 20) into DIR from the npm registry alone. Every install script that
# would download something from elsewhere is skipped and its work is done
# here from Debian packages (build-essential python3 libkrb5-dev ripgrep).
# Idempotent: a finished install leaves DIR/.installed and is not redone.
# Usage: install-code-server.sh DIR
set -eu
D=${1:?usage: install-code-server.sh DIR}
VERSION=4.99.4
if [ -f "$D/.installed" ] && [ "$(cat "$D/.installed")" = "$VERSION" ]; then
  exit 0
fi
rm -rf "$D"
mkdir -p "$D" && cd "$D"
npm init -y >/dev/null
export npm_config_nodedir=/usr   # local node headers: node-gyp would download them
npm install --no-audit --no-fund --ignore-scripts --loglevel=error "code-server@$VERSION"
# Native modules build from source, two at a time (the machine has 2 cores):
# the longest (spdlog) alone, the others one after another beside it.
(npm rebuild --loglevel=error argon2 >"$D/argon2.log" 2>&1) &   # prebuilt download fails
ARGON=$!
CS="$D/node_modules/code-server"
cd "$CS/lib/vscode"                   # code-server's postinstall.sh, minus its downloads
npm install --no-audit --no-fund --omit=dev --ignore-scripts --loglevel=error
mkdir -p node_modules/@vscode/ripgrep/bin && cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
(npm rebuild --loglevel=error @vscode/spdlog >"$D/spdlog.log" 2>&1) &
SPDLOG=$!
wait $ARGON || { cat "$D/argon2.log"; exit 1; }
npm rebuild --loglevel=error kerberos @parcel/watcher @vscode/deviceid native-watchdog
(cd node_modules/node-pty && node "$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" rebuild --nodedir=/usr >"$D/node-pty.log" 2>&1) || { cat "$D/node-pty.log"; exit 1; }
wait $SPDLOG || { cat "$D/spdlog.log"; exit 1; }
for m in kerberos node-pty @vscode/deviceid @vscode/spdlog native-watchdog @parcel/watcher; do node -e "require('$m')"; done
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)
cd extensions && npm install --no-audit --no-fund --omit=dev --ignore-scripts --loglevel=error && node postinstall.mjs >/dev/null
echo "$VERSION" >"$D/.installed"
echo "code-server $VERSION installed in $CS"
