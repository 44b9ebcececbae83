#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the wasm32-wasip2 target,
# builds the plugins (the Python and JavaScript ones with their SDKs'
# toolchains, installed under target/sdk-tools), makes sure a Redis, a
# Postgres and a JetStream-enabled nats-server answer (installing and
# starting them if needed),
# builds the `sluice` binary (the black-box tests in `tests/` run it as a
# user would), then runs the whole workspace's tests in the release profile
# (one build of wasmtime serves the tests, the binary and the benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."

export SLUICE_TEST_REDIS_URL="${SLUICE_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
redis_port="${SLUICE_TEST_REDIS_URL##*:}"
redis_port="${redis_port%%/*}"
# The tests start redis-server themselves too (private servers, and the
# Redis Cluster of 3 masters + 3 replicas that the testkit forms with
# redis-cli), so both must be installed even when a Redis already answers.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "==> installing redis-server (and redis-cli)"
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi
if ! (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null; then
    echo "==> starting redis-server on port $redis_port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.1; done
fi

# The sink tests deliver to a real Postgres (trust auth on 127.0.0.1, database
# `test`) and a JetStream-enabled nats-server: probe both, install them from
# Debian's packages and start them when they do not answer.
export SLUICE_TEST_PG_URL="${SLUICE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
export SLUICE_TEST_NATS_URL="${SLUICE_TEST_NATS_URL:-nats://127.0.0.1:4222}"
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! answers 5432; then
    if ! command -v pg_ctlcluster >/dev/null; then
        echo "==> installing postgresql"
        (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null
    fi
    cluster="$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')"
    hba="/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf"
    # Local test server: trust connections from loopback (no password in test URLs).
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    echo "==> starting postgresql ($cluster)"
    pg_ctlcluster ${cluster} start || true
    for _ in $(seq 100); do answers 5432 && break; sleep 0.1; done
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
if ! answers 4222; then
    if ! command -v nats-server >/dev/null; then
        echo "==> installing nats-server"
        (apt-get update -qq && apt-get install -y -qq nats-server) >/dev/null
    fi
    echo "==> starting nats-server with JetStream on port 4222"
    mkdir -p /tmp/sluice-test-nats
    setsid nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/sluice-test-nats -l /tmp/sluice-test-nats/log >/dev/null 2>&1 < /dev/null &
    for _ in $(seq 100); do answers 4222 && break; sleep 0.1; done
fi

# `promtool check metrics` checks a live server's /metrics in the sinks
# tests (tests/tests/sinks/prometheus.rs); Debian's `prometheus` package has it.
if ! command -v promtool >/dev/null; then
    echo "==> installing promtool (Debian's prometheus package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null
fi

./scripts/build-plugins.sh
# The Python and JavaScript SDKs: their toolchains (a venv with
# componentize-py, npm packages from the lockfile; cached under
# target/sdk-tools), the example and test stages built into components, and
# the SDKs' own unit tests, run natively.
./scripts/build-sdk-plugins.sh
echo "==> Python SDK unit tests (pytest)"
(cd plugin-sdk/python && ../../target/sdk-tools/venv/bin/python -m pytest -q)
(cd plugins-py && ../target/sdk-tools/venv/bin/python -m pytest -q)
echo "==> JavaScript SDK unit tests (node --test)"
(cd plugin-sdk/js && node --test test/)
(cd plugins-js && node --test)
# The dashboard's browser test (tests/tests/dashboard_browser.rs): Debian's
# chromium and playwright-core (cached under target/browser-tools).
./scripts/browser-tools.sh
# The OpenAPI test (tests/tests/openapi.rs): schemathesis and
# openapi-spec-validator in a venv (cached under target/openapi-tools).
./scripts/openapi-tools.sh
# Build everything first, the `sluice` binary included (the black-box tests in
# tests/ run target/release/sluice). Not `cargo build -p sluice`: that resolves
# the dependencies' features without the tests' and builds wasmtime a second
# time; the test build puts its own binary at target/release/sluice.
echo "==> cargo test --no-run (release): the tests and the sluice binary"
cargo test --release --locked --workspace --no-run
echo "==> cargo test (release)"
cargo test --release --locked --workspace
