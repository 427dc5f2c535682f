#!/usr/bin/env bash
# The price of durability: the lifecycle mix (open -> consumer message -> close) driven
# by wrk against `switchboard serve` three times in one run, with the same settings:
#   1. --ephemeral (memory only),
#   2. the embedded SQLite store with durability = "commit" (the default: each answer
#      waits for its group commit, appended to the change log and fsync'd; the tables
#      are brought up to date from the log every 250 ms),
#   3. the same store with durability = "relaxed",
#   4. the commit store without the platform stream's event log (events_kept = 0): what
#      keeping the events in the store costs,
#   5. (commit-tables) the commit store without the change log (change_log = false):
#      each group commit goes to the tables.
# Prints each run's rate, p50 and p99, the ratios to the ephemeral run, and the store's
# commit figures from /metrics.
#
#   benches/http/durability.sh                     # 2 threads, 64 connections, 20 s each
#   DURATION=60s benches/http/durability.sh
#   BIN=/tmp/old/switchboard benches/http/durability.sh   # another build, no cargo build
#   RUNS="ephemeral commit" benches/http/durability.sh    # only these runs
#
# Needs wrk. Listens on 127.0.0.1 only; the data directory is a temp dir, removed after.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
AGENTS=${AGENTS:-200}
ADDR=127.0.0.1:18194
. benches/http/lib.sh
need_wrk
data=$(mktemp -d)
trap 'cleanup; rm -rf "$data"' EXIT
if [ "$BIN" = target/release/switchboard ]; then
  echo "== building (release)"
  cargo build --release --quiet --bin switchboard
fi
# The embedded default config's skills, plus the relaxed store setting.
{ "$BIN" default-config; printf '\n[store]\ndurability = "relaxed"\n'; } > "$data/relaxed.toml"
{ "$BIN" default-config; printf '\n[store]\nevents_kept = 0\n'; } > "$data/no-events.toml"
{ "$BIN" default-config; printf '\n[store]\nchange_log = false\n'; } > "$data/tables.toml"
RUNS=${RUNS:-ephemeral commit relaxed commit-no-events commit-tables}

run() {
  local name=$1
  shift
  echo "== $name"
  start_switchboard "$ADDR" "$AGENTS" "$@"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$LUA" "http://$ADDR" -- "$name-" > "/tmp/sb-wrk-$name.txt"
  curl -s "http://$ADDR/metrics" > "/tmp/sb-metrics-$name.txt"
  kill "$SB_PID"
  wait "$SB_PID" 2>/dev/null || true
  echo "$name requests_per_sec $(field requests_per_sec "/tmp/sb-wrk-$name.txt") p50_ms $(field latency_p50_ms "/tmp/sb-wrk-$name.txt") p99_ms $(field latency_p99_ms "/tmp/sb-wrk-$name.txt") non2xx $(field errors_non2xx "/tmp/sb-wrk-$name.txt")"
}

wanted() { [[ " $RUNS " == *" $1 "* ]]; }
rm -f /tmp/sb-wrk-{ephemeral,commit,relaxed,commit-no-events,commit-tables}.txt
wanted ephemeral && run ephemeral --ephemeral
wanted commit && run commit --data-dir "$data/commit"
wanted relaxed && run relaxed --data-dir "$data/relaxed" --config "$data/relaxed.toml"
wanted commit-no-events && run commit-no-events --data-dir "$data/no-events" --config "$data/no-events.toml"
wanted commit-tables && run commit-tables --data-dir "$data/tables" --config "$data/tables.toml"

metric() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "") print "n/a"; else printf "%.2f", a / b}'; }
e=$(field requests_per_sec /tmp/sb-wrk-ephemeral.txt 2>/dev/null || true)
echo "== result"
for m in commit relaxed commit-no-events commit-tables; do
  wanted "$m" || continue
  r=$(field requests_per_sec "/tmp/sb-wrk-$m.txt")
  echo "${m}_requests_per_sec $r"
  echo "${m}_p50_ms $(field latency_p50_ms "/tmp/sb-wrk-$m.txt")"
  echo "${m}_p99_ms $(field latency_p99_ms "/tmp/sb-wrk-$m.txt")"
  echo "${m}_over_ephemeral $(ratio "$r" "$e")"
  commits=$(metric switchboard_store_commit_seconds_count "/tmp/sb-metrics-$m.txt")
  secs=$(metric switchboard_store_commit_seconds_sum "/tmp/sb-metrics-$m.txt")
  rows=$(metric switchboard_store_batch_rows_sum "/tmp/sb-metrics-$m.txt")
  echo "${m}_commits $commits"
  echo "${m}_mean_commit_ms $(awk -v s="$secs" -v c="$commits" 'BEGIN {printf "%.2f", 1000 * s / c}')"
  echo "${m}_mean_rows_per_commit $(awk -v r="$rows" -v c="$commits" 'BEGIN {printf "%.1f", r / c}')"
  applies=$(metric switchboard_store_apply_seconds_count "/tmp/sb-metrics-$m.txt")
  if [ -n "$applies" ] && [ "$applies" != 0 ]; then
    asecs=$(metric switchboard_store_apply_seconds_sum "/tmp/sb-metrics-$m.txt")
    arows=$(metric switchboard_store_apply_rows_sum "/tmp/sb-metrics-$m.txt")
    echo "${m}_applies $applies"
    echo "${m}_mean_apply_ms $(awk -v s="$asecs" -v c="$applies" 'BEGIN {printf "%.1f", 1000 * s / c}')"
    echo "${m}_rows_applied_per_row_logged $(awk -v a="$arows" -v r="$rows" 'BEGIN {printf "%.2f", a / r}')"
  fi
done
if wanted ephemeral; then
  echo "ephemeral_requests_per_sec $e"
  echo "ephemeral_p99_ms $(field latency_p99_ms /tmp/sb-wrk-ephemeral.txt)"
fi
if wanted commit && wanted commit-no-events; then
  echo "event_log_cost_commit_over_no_events $(ratio "$(field requests_per_sec /tmp/sb-wrk-commit.txt)" "$(field requests_per_sec /tmp/sb-wrk-commit-no-events.txt)")"
fi
if wanted commit; then
  echo "store_file_mb $(du -sm "$data/commit" | cut -f1)"
fi
