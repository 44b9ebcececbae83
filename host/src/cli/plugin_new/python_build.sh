#!/bin/sh
# Builds {{name}}.wasm from stage.py with the Sluice Python SDK
# (componentize-py; offline). Its toolchain: {{sdk}}/scripts/sdk-tools.sh
set -e
cd "$(dirname "$0")"
PYTHONPATH="{{sdk}}/plugin-sdk/python" exec "{{sdk}}/target/sdk-tools/venv/bin/python" -m sluice_sdk.build stage.py -o {{name}}.wasm
