#!/usr/bin/env bash
# Installs the toolchains the Python and JavaScript stage SDKs build with,
# under target/sdk-tools (kept between runs; a rerun with nothing changed
# takes a second):
# - target/sdk-tools/venv: a virtualenv with componentize-py and pytest at the
#   versions in plugin-sdk/python/requirements-build.txt;
# - target/sdk-tools/js: the npm packages of plugin-sdk/js/package.json
#   (componentize-js, rolldown) installed with `npm ci` from its lockfile.
# Downloads happen here, never at build time: the builds run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/sdk-tools
mkdir -p "$tools"

need() { command -v "$1" >/dev/null || { echo "sdk-tools: $1 is required ($2)" >&2; exit 1; }; }
need python3 "the Python SDK builds with it"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "==> installing node and npm"
    (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null
fi

req=plugin-sdk/python/requirements-build.txt
if ! cmp -s "$req" "$tools/venv/.installed" 2>/dev/null; then
    echo "==> python venv for the Python SDK ($(tr '\n' ' ' < "$req"))"
    rm -rf "$tools/venv"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$tools/venv/.installed"
fi

lock=plugin-sdk/js/package-lock.json
if ! cmp -s "$lock" "$tools/js/package-lock.json" 2>/dev/null || [ ! -d "$tools/js/node_modules" ]; then
    echo "==> npm packages for the JavaScript SDK (npm ci)"
    rm -rf "$tools/js"
    mkdir -p "$tools/js"
    cp plugin-sdk/js/package.json "$lock" "$tools/js/"
    (cd "$tools/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
