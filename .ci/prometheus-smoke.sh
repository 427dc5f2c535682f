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

# The rules of cluster/prometheus/rules.yml, loaded by the server from the scrape
# config, evaluated against the live series: every group loaded, every rule evaluated
# at least once without an error, and the backlog alert, whose series exist now (one
# agent, three slots, four conversations: one waits with an agent online), quiet.
check_rules() {
  local rules="http://127.0.0.1:$prom_port/api/v1/rules"
  for _ in $(seq 1 100); do
    local answer
    answer=$(curl -fsS "$rules" || true)
    local summary
    summary=$(echo "$answer" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
unknown = [r["name"] for r in rules if r.get("health") != "ok"]
if bad:
    print("ERR " + "; ".join(f"{n}: {e}" for n, e in bad))
elif not rules or unknown:
    print("WAIT")
else:
    firing = [r["name"] for r in rules if r.get("type") == "alerting" and r.get("state") != "inactive"]
    print(f"OK {len(groups)} groups, {len(rules)} rules evaluated, not inactive: {firing}")
' 2>/dev/null || echo WAIT)
    case "$summary" in
      OK*)
        echo "prometheus rules: ${summary#OK }"
        echo "$summary" | grep -q "SwitchboardBacklogWithoutAgents" && { echo "the backlog alert fires with an agent online" >&2; exit 1; }
        return 0 ;;
      ERR*) echo "a rule fails to evaluate: ${summary#ERR }" >&2; exit 1 ;;
    esac
    sleep 0.2
  done
  echo "the rules were never all evaluated: $answer" >&2
  exit 1
}

# Every query of the Grafana dashboard (cluster/grafana/switchboard.json) against the
# real Prometheus, once the server has had some load (the load tool for a few seconds,
# and a conversation of a skill with a 1 s SLA and no agent, which goes overdue): each
# query parses and returns data. `$skill` reads as every skill, `$__rate_interval` as 1m.
check_dashboard() {
  curl -fsS -X PUT "$api/skills/smoke-sla" -H 'Content-Type: application/json' \
    -d '{"sla":{"normal_secs":1,"urgent_secs":1,"first_time_secs":1}}' >/dev/null
  curl -fsS -X POST "$api/conversations" -d '{"consumer_id":"smoke-late","skill":"smoke-sla"}' >/dev/null
  "$bin" loadtest --url "http://127.0.0.1:$port" --rate 20 --duration 5s --agents 10 --skills 2 \
    --drain 10s >"$work/loadtest.log" 2>&1 || { cat "$work/loadtest.log" >&2; exit 1; }
  local last=""
  for _ in $(seq 1 60); do
    last=$(python3 - "$prom_port" <<'PY'
import json, sys, urllib.parse, urllib.request
port = sys.argv[1]
dash = json.load(open("cluster/grafana/switchboard.json"))
exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
empty, errors = [], []
for title, expr in exprs:
    q = expr.replace("$skill", ".*").replace("$__rate_interval", "1m")
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        answer = json.load(urllib.request.urlopen(url, timeout=5))
    except Exception as e:  # a query that does not parse answers 400
        errors.append(f"{title}: {q}: {e}")
        continue
    if not answer["data"]["result"]:
        empty.append(f"{title}: {q}")
if errors:
    print("ERR " + " | ".join(errors))
elif empty:
    print("EMPTY " + " | ".join(empty))
else:
    print(f"OK {len(exprs)} queries of {len(dash['panels'])} panels and rows")
PY
)
    case "$last" in
      OK*) echo "grafana dashboard: ${last#OK } parse and return data"; return 0 ;;
      ERR*) echo "dashboard queries fail: ${last#ERR }" >&2; exit 1 ;;
    esac
    sleep 1
  done
  echo "dashboard queries without data after 60 s: ${last#EMPTY }" >&2
  exit 1
}

# The smoke-sla skill has a conversation waiting and no agent: its backlog alert goes
# pending (it fires after 2 minutes), and only for that skill.
check_backlog_alert() {
  local alerts="http://127.0.0.1:$prom_port/api/v1/alerts" answer=""
  for _ in $(seq 1 60); do
    answer=$(curl -fsS "$alerts" || true)
    local found
    found=$(echo "$answer" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
backlog = sorted(a["labels"]["skill"] for a in alerts if a["labels"]["alertname"] == "SwitchboardBacklogWithoutAgents")
print(",".join(backlog))
' 2>/dev/null || true)
    if [ "$found" = "smoke-sla" ]; then
      echo "prometheus alerts: SwitchboardBacklogWithoutAgents pending for smoke-sla (waiting, no agent) and no other skill"
      return 0
    fi
    [ -n "$found" ] && { echo "the backlog alert is raised for skills with agents online: $found" >&2; exit 1; }
    sleep 1
  done
  echo "the backlog alert never went pending for smoke-sla: $answer" >&2
  exit 1
}

query="http://127.0.0.1:$prom_port/api/v1/query?query=switchboard_assignments_total"
for _ in $(seq 1 100); do
  result=$(curl -fsS "$query" || true)
  if echo "$result" | grep -q '"skill":"general"'; then
    value=$(echo "$result" | sed -n 's/.*"value":\[[^,]*,"\([0-9.]*\)"\].*/\1/p')
    echo "prometheus: switchboard_assignments_total{skill=\"general\"} = $value (read back through the query API)"
    [ "$value" = "3" ] || { echo "expected 3 assignments (3 slots), got $value" >&2; exit 1; }
    check_rules
    check_dashboard
    check_backlog_alert
    exit 0
  fi
  sleep 0.2
done
echo "prometheus never returned the switchboard series; last answer: $result" >&2
tail -20 "$work/prometheus.log" >&2
exit 1
