#!/usr/bin/env bash
# The whole test suite: system packages it needs, build, then every test (unit, contract,
# end to end with real etcd, coordinators and data nodes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_pkgs+=(etcd-server)
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || need_pkgs+=(fuse3)
ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2' || need_pkgs+=(libfuse2)
# strata's libfuse 3 binding (native/) is compiled by npm ci: headers, pkg-config, a compiler.
pkg-config --exists fuse3 2>/dev/null || need_pkgs+=(libfuse3-dev pkg-config)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing system packages: ${need_pkgs[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

# The web console's test drives Debian's chromium (no browser download); without it that test is skipped.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (the web console test's browser)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || echo "chromium not installed: the web console test will be skipped" >&2
  else
    echo "no chromium: the web console test will be skipped (sudo apt-get install -y chromium)" >&2
  fi
fi

[ -d node_modules ] || npm ci
# Built by npm ci; again here if the packages it needs came after it.
[ -f build/Release/strata_fuse3.node ] || npm run build:native
npm run build --silent
exec npx vitest run "$@"
