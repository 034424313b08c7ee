#!/usr/bin/env bash
# Installs the Debian packages the tests need that are missing, as root or
# through sudo. `make test` runs it first; the extension's npm packages and
# code-server are installed by the vscode target itself.
set -euo pipefail
need=(gcc g++ libc6-dev make clang lld gdb gdbserver lldb qemu-user binutils chromium ripgrep python3 libkrb5-dev curl unzip)
missing=()
for p in "${need[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
