#!/bin/sh
# Builds {{name}}.wasm with cargo for wasm32-wasip2 (rustup target add wasm32-wasip2).
set -e
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{lib}}.wasm" {{name}}.wasm
