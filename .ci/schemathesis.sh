#!/usr/bin/env bash
# schemathesis (PyPI) against a live server: every operation of GET /openapi.json,
# every check, the stateful phase with the document's links. Bounded in time; fails on
# any failure or a panic in the server. Needs schemathesis (the version .ci/run pins).
# One worker: with two, hypothesis parses lambda sources from two threads at once and
# CPython 3.11.7's ast.parse is not safe for that ("SystemError: AST constructor
# recursion depth mismatch", a Runtime Error of the fuzzer, not of the server).
# Usage: .ci/schemathesis.sh <switchboard binary> [seconds]
set -euo pipefail
bin=$1
budget=${2:-180}
here=$(cd "$(dirname "$0")" && pwd)
port=18089
token=schemathesis-token
dir=$(mktemp -d)
. "$here/serve.sh"
SWITCHBOARD_API_TOKEN=$token serve "$dir/server.log" "$bin" --listen 127.0.0.1:$port --ephemeral
python3 -m schemathesis.cli --config-file "$here/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all \
  --max-time "$budget" \
  --max-examples 100 \
  --workers 1 \
  --seed "${SCHEMATHESIS_SEED:-20261203}" \
  --generation-database none \
  --no-color \
  --report junit --report-dir "${SCHEMATHESIS_REPORT_DIR:-target/schemathesis}"
if ! kill -0 $server 2>/dev/null; then
  echo "the server died during the run:"; tail -50 "$dir/server.log"; exit 1
fi
if grep -q "panicked" "$dir/server.log"; then
  echo "the server panicked during the run:"; grep -B2 -A10 panicked "$dir/server.log"; exit 1
fi
echo "schemathesis: no failures; server log $dir/server.log"
