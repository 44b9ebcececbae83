#!/usr/bin/env bash
# The chaos soak, long run: builds the plugins, the `sluice` binary and the
# `sluice-chaos` driver (tests/src/bin/sluice-chaos.rs), then runs it with
# the arguments given, e.g.
#   ./scripts/chaos.sh --store both --rounds 200
#   ./scripts/chaos.sh --store redis --rounds 50 --seed 42 --rate 5000
# `--help` lists the flags. Needs `redis-server` for the Redis store (it
# starts a private one with AOF on a free port). Exits non-zero when any
# round lost, duplicated or misplaced an event or got a window wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
./scripts/build-plugins.sh >/dev/null
echo "==> building sluice and sluice-chaos (release)" >&2
cargo test --release --locked --workspace --no-run --quiet >&2
exec ./target/release/sluice-chaos "$@"
