#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 (installing the target if
# needed). Output: target/wasm32-wasip2/release/<crate_name>.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi
# Plugins named legacy-* are built against sluice:stage@0.1.0 (the SDK's
# feature `stage-0-1`); cargo unifies features over one build, so they get a
# build of their own.
packages=()
legacy=()
for dir in plugins/*/; do
    name="$(basename "$dir")"
    case "$name" in
        legacy-*) legacy+=(-p "$name") ;;
        *) packages+=(-p "$name") ;;
    esac
done
echo "==> building ${#packages[@]} plugins for wasm32-wasip2 (sluice:stage@0.2.0)"
cargo build --release --locked --target wasm32-wasip2 "${packages[@]}"
if [ ${#legacy[@]} -gt 0 ]; then
    echo "==> building $((${#legacy[@]} / 2)) plugins against sluice:stage@0.1.0"
    cargo build --release --locked --target wasm32-wasip2 "${legacy[@]}"
fi
ls -1 target/wasm32-wasip2/release/*.wasm
