#!/usr/bin/env bash
# The live operations page in headless Chromium (Debian's `chromium`, driven by
# playwright-core from npm): tests/browser/live-page.mjs against a live server with an
# API token. Writes the screenshot to target/browser/live-page.png.
# Usage: .ci/browser.sh <switchboard binary>
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")/.."
port=18090
token=browser-token
dir=$(mktemp -d)
cat >"$dir/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[routing]
away_reasons = ["lunch", "meeting"]

[[skills]]
id = "general"

[[skills]]
id = "billing"
TOML
. .ci/serve.sh
SWITCHBOARD_API_TOKEN=$token serve "$dir/server.log" "$bin" --config "$dir/config.toml" --ephemeral
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p target/browser
CHROMIUM=$(command -v chromium) SWITCHBOARD_URL="http://127.0.0.1:$port" SWITCHBOARD_TOKEN=$token \
  SCREENSHOT="$PWD/target/browser/live-page.png" timeout 120 node tests/browser/live-page.mjs
