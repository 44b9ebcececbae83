#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 (installing the target if
# needed). Output: target/wasm32-wasip2/release/<crate_name>.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi
packages=()
for dir in plugins/*/; do
    packages+=(-p "$(basename "$dir")")
done
echo "==> building ${#packages[@]} plugins for wasm32-wasip2"
cargo build --release --locked --target wasm32-wasip2 "${packages[@]}"
ls -1 target/wasm32-wasip2/release/*.wasm
