#!/usr/bin/env bash
# Installs what the dashboard's browser test (tests/tests/dashboard_browser.rs
# running tests/browser/dashboard.cjs) needs, kept between runs (a rerun with
# nothing changed takes a second):
# - Debian's `chromium` at /usr/bin/chromium (apt), when missing;
# - target/browser-tools/node_modules: playwright-core from
#   tests/browser/package-lock.json (`npm ci`). playwright-core drives the
#   system chromium; it never downloads a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "==> installing node and npm"
    (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null
fi
tools=target/browser-tools
lock=tests/browser/package-lock.json
if ! cmp -s "$lock" "$tools/package-lock.json" 2>/dev/null || [ ! -d "$tools/node_modules/playwright-core" ]; then
    echo "==> npm packages for the browser test (npm ci)"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp tests/browser/package.json "$lock" "$tools/"
    (cd "$tools" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
