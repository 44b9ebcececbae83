#!/usr/bin/env bash
# Builds everything, starts `sluice serve` on the embedded store
# (./sluice-data), uploads the example plugins, creates the pipeline `demo`
# (bot-filter -> url-parts -> pii-redact, with a per-minute page-view
# window and "online now") and prints a curl to try.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-plugins.sh
cargo build --release --locked -p sluice
listen="${SLUICE_LISTEN:-127.0.0.1:7878}"
./target/release/sluice serve --listen "$listen" --store "${SLUICE_STORE:-./sluice-data}" &
server=$!
trap 'kill $server 2>/dev/null' INT TERM EXIT
for _ in $(seq 100); do curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
for plugin in bot-filter url-parts pii-redact geo-enrich split-items schema-check flaky; do
    file="target/wasm32-wasip2/release/${plugin//-/_}.wasm"
    curl -fsS -X PUT --data-binary "@$file" -H 'content-type: application/wasm' "http://$listen/v1/plugins/$plugin" >/dev/null
done
curl -fsS -X PUT -H 'content-type: application/json' "http://$listen/v1/pipelines/demo" -d '{
  "stages": [
    {"name": "drop-bots", "plugin": "bot-filter"},
    {"name": "parts", "plugin": "url-parts"},
    {"name": "redact", "plugin": "pii-redact", "config": {"fields": ["data.email"], "mode": "mask"}}
  ],
  "windows": [
    {"name": "views_per_path", "kind": "tumbling", "size_ms": 60000, "group_by": "data.path",
     "allowed_lateness_ms": 10000, "aggregates": [{"op": "count"}]},
    {"name": "online_now", "kind": "sliding", "size_ms": 300000, "slide_ms": 1000,
     "aggregates": [{"op": "count_distinct", "field": "data.user_id"}]}
  ]}' >/dev/null
echo
echo "sluice is running on http://$listen with pipeline 'demo'. Try:"
echo "  curl -s -XPOST http://$listen/v1/pipelines/demo/events -H 'content-type: application/json' -d '{\"type\":\"page_view\",\"data\":{\"url\":\"https://shop.example/p/1?ref=mail\",\"ua\":\"Mozilla/5.0\",\"email\":\"jane@example.com\"}}' && sleep 1 && curl -s http://$listen/v1/pipelines/demo/output"
echo "  curl -s http://$listen/v1/pipelines/demo/windows/views_per_path    # page views per path per minute"
echo "Live dashboard: http://$listen/"
echo "(Ctrl-C stops the server; data stays in ./sluice-data)"
wait $server
