#!/bin/sh
# Builds {{name}}.wasm from stage.js with the Sluice JavaScript SDK
# (componentize-js; offline). Its toolchain: {{sdk}}/scripts/sdk-tools.sh
set -e
cd "$(dirname "$0")"
exec node "{{sdk}}/plugin-sdk/js/src/build.js" stage.js -o {{name}}.wasm
