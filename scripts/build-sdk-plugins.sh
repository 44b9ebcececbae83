#!/usr/bin/env bash
# Builds the Python (plugins-py/) and JavaScript (plugins-js/) example and
# test stages into components, offline, with the toolchains of
# scripts/sdk-tools.sh (run first, here). Output:
#   target/plugins-py/<name>.wasm, target/plugins-js/<name>.wasm
# A component newer than its sources and the SDK is not built again.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/sdk-tools.sh
mkdir -p target/plugins-py target/plugins-js
# The JavaScript examples import "sluice-sdk" (as a stage's author does); the
# build resolves it itself, node's tests through this link.
mkdir -p plugins-js/node_modules
ln -sfn ../../plugin-sdk/js plugins-js/node_modules/sluice-sdk

# Whether $1 is missing or older than any of the other files.
stale() {
    local out="$1"; shift
    [ -f "$out" ] || return 0
    [ -n "$(find "$@" -newer "$out" -type f -print -quit)" ]
}

build_python() {
    local src out
    for src in plugins-py/*.py; do
        case "$(basename "$src")" in test_*) continue ;; esac
        out="target/plugins-py/$(basename "$src" .py).wasm"
        if stale "$out" "$src" plugin-sdk/python/sluice_sdk wit; then
            echo "==> python: $src -> $out"
            PYTHONPATH=plugin-sdk/python target/sdk-tools/venv/bin/python -m sluice_sdk.build "$src" -o "$out"
        fi
    done
}

build_js() {
    local src out
    for src in plugins-js/*.js; do
        case "$src" in *.test.js) continue ;; esac
        out="target/plugins-js/$(basename "$src" .js).wasm"
        if stale "$out" "$src" plugin-sdk/js/src wit; then
            echo "==> js: $src -> $out"
            node plugin-sdk/js/src/build.js "$src" -o "$out"
        fi
    done
}

# The two languages build side by side (each build is mostly one process).
build_python & py=$!
build_js & js=$!
status=0
wait "$py" || status=$?
wait "$js" || status=$?
[ "$status" -eq 0 ] || { echo "building the SDK plugins failed" >&2; exit "$status"; }
ls -l target/plugins-py/*.wasm target/plugins-js/*.wasm
