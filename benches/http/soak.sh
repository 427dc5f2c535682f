#!/usr/bin/env bash
# The soak: the lifecycle mix (benches/http/lifecycle.lua) at the highest rate the
# server sustains (wrk, closed loop) for ROUNDS back-to-back rounds of ROUND each
# against one server, printing per round the rate, p50, p99, non-2xx and the server's
# RSS, then the RSS growth and the p99 drift over the second half.
#
#   benches/http/soak.sh                  # 10 rounds of 60 s: 10 minutes, in memory only
#   ROUNDS=3 ROUND=20s benches/http/soak.sh
#   STORE=1 benches/http/soak.sh          # with the embedded store (durability = commit),
#                                         # printing its size on disk each round
#   STORE=1 ROUTING='max_consumers = 100000' benches/http/soak.sh
#                                         # lines added to the default config's [routing]
#                                         # (e.g. lower bounds, to see the store level off
#                                         # within minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/http/lib.sh

ROUNDS=${ROUNDS:-10}
ROUND=${ROUND:-60s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
AGENTS=${AGENTS:-200}
ADDR=127.0.0.1:18193
need_wrk
[ "$BIN" = target/release/switchboard ] && cargo build --release --quiet --bin switchboard
config=$(mktemp)
trap 'cleanup; rm -f "$config"' EXIT
"$BIN" default-config | awk -v extra="${ROUTING:-}" '{print} /^\[routing\]$/ && extra != "" {print extra}' > "$config"
if [ "${STORE:-0}" = 1 ]; then
  data=$(mktemp -d)
  trap 'cleanup; rm -rf "$data" "$config"' EXIT
  start_switchboard "$ADDR" "$AGENTS" --data-dir "$data" --config "$config"
else
  data=
  start_switchboard "$ADDR" "$AGENTS" --ephemeral --config "$config"
fi
store_mb() { if [ -n "$data" ]; then du -sm "$data" | cut -f1; else echo -; fi; }
# Rows of the store's tables (conversations, consumers, events), if sqlite3 is there.
store_rows() {
  if [ -n "$data" ] && command -v sqlite3 >/dev/null; then
    sqlite3 "$data/switchboard.db" "SELECT (SELECT count(*) FROM conversations) || '/' || (SELECT count(*) FROM consumers) || '/' || (SELECT count(*) FROM events)"
  else echo -; fi
}
# Group commits that took over a second so far (a stalled disk shows here first).
slow_commits() {
  if [ -n "$data" ]; then
    curl -s "http://$ADDR/metrics" | awk '$1 == "switchboard_store_commit_seconds_count" {n = $2} $1 == "switchboard_store_commit_seconds_bucket{le=\"1\"}" {b = $2} END {print n - b}'
  else echo -; fi
}
# The change log's bytes on disk, MB (its segments are deleted once applied).
log_mb() {
  if [ -n "$data" ]; then
    curl -s "http://$ADDR/metrics" | awk '$1 == "switchboard_store_change_log_bytes" {printf "%.0f", $2 / 1048576}'
  else echo -; fi
}
echo "round requests_per_sec p50_ms p99_ms non2xx rss_mb store_mb conversations/consumers/events commits_over_1s change_log_mb"
out=$(mktemp)
: > /tmp/sb-soak.txt
for r in $(seq 1 "$ROUNDS"); do
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$ROUND" -s "$LUA" "http://$ADDR" -- "r$r-" > "$out"
  line="$r $(field requests_per_sec "$out") $(field latency_p50_ms "$out") $(field latency_p99_ms "$out") $(field errors_non2xx "$out") $(( $(rss_kb "$SB_PID") / 1024 )) $(store_mb) $(store_rows) $(slow_commits) $(log_mb)"
  echo "$line" | tee -a /tmp/sb-soak.txt
done
half=$(( ROUNDS / 2 ))
awk -v h="$half" -v n="$ROUNDS" '
  NR == h { rss0 = $6; p0 = $4 }
  NR == h { st0 = $7 }
  NR == n { printf "soak_rss_growth_second_half_percent %.1f\n", 100 * ($6 - rss0) / rss0;
            if (st0 != "-") printf "soak_store_mb_middle %s\nsoak_store_mb_end %s\n", st0, $7;
            printf "soak_p99_first_round_of_second_half_ms %s\nsoak_p99_last_round_ms %s\n", p0, $4 }
  { sum += $2 } END { printf "soak_mean_requests_per_sec %.0f\n", sum / NR }' /tmp/sb-soak.txt
