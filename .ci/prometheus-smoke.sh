#!/usr/bin/env bash
# Smoke test of the metrics endpoint against real Prometheus tools:
#  1. `promtool check metrics` on switchboard's live /metrics output;
#  2. a real Prometheus server scrapes switchboard (cluster/prometheus.yml) and a
#     switchboard series is read back through Prometheus's query API.
# Usage: .ci/prometheus-smoke.sh path/to/switchboard
set -euo pipefail
bin=${1:?usage: $0 path/to/switchboard}
port=18480
prom_port=19090
work=$(mktemp -d)
cleanup() {
  [ -n "${sb_pid:-}" ] && kill "$sb_pid" 2>/dev/null || true
  [ -n "${prom_pid:-}" ] && kill "$prom_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url, what
  for _ in $(seq 1 100); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $2 at $1" >&2
  return 1
}

"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/switchboard.log" 2>&1 &
sb_pid=$!
wait_for "http://127.0.0.1:$port/readyz" switchboard

api="http://127.0.0.1:$port/v1"
curl -fsS -X PUT "$api/agents/smoke-agent" -H 'Content-Type: application/json' \
  -d '{"skills":["general"],"max_slots":3}' >/dev/null
curl -fsS -X POST "$api/agents/smoke-agent/status" -d '{"status":"online"}' >/dev/null
for i in 1 2 3 4; do
  curl -fsS -X POST "$api/conversations" -d "{\"consumer_id\":\"smoke-$i\",\"skill\":\"general\"}" >/dev/null
done

curl -fsS "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"
echo "promtool: metrics OK ($(grep -vc '^#' "$work/metrics.txt") samples)"

prometheus --config.file=cluster/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_for "http://127.0.0.1:$prom_port/-/ready" prometheus

query="http://127.0.0.1:$prom_port/api/v1/query?query=switchboard_assignments_total"
for _ in $(seq 1 100); do
  result=$(curl -fsS "$query" || true)
  if echo "$result" | grep -q '"skill":"general"'; then
    value=$(echo "$result" | sed -n 's/.*"value":\[[^,]*,"\([0-9.]*\)"\].*/\1/p')
    echo "prometheus: switchboard_assignments_total{skill=\"general\"} = $value (read back through the query API)"
    [ "$value" = "3" ] || { echo "expected 3 assignments (3 slots), got $value" >&2; exit 1; }
    exit 0
  fi
  sleep 0.2
done
echo "prometheus never returned the switchboard series; last answer: $result" >&2
tail -20 "$work/prometheus.log" >&2
exit 1
