#!/usr/bin/env bash
# Installs what the OpenAPI test (tests/tests/openapi.rs) runs, kept between
# runs (a rerun with nothing changed takes a second):
# - target/openapi-tools/venv: a virtualenv with schemathesis (the API
#   fuzzer) and openapi-spec-validator at the versions in
#   tests/openapi/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "openapi-tools: python3 is required (the venv is made with it)" >&2; exit 1; }
tools=target/openapi-tools
req=tests/openapi/requirements.txt
if ! cmp -s "$req" "$tools/venv/.installed" 2>/dev/null; then
    echo "==> python venv for the OpenAPI test ($(tr '\n' ' ' < "$req"))"
    rm -rf "$tools/venv"
    mkdir -p "$tools"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$tools/venv/.installed"
fi
