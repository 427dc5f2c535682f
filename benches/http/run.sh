#!/usr/bin/env bash
# The HTTP benchmark: the lifecycle mix (open -> consumer message -> close) driven by
# wrk against `switchboard serve`, and the same wrk settings and requests against a bare
# actix-web JSON echo (examples/http_echo.rs) in the same run. The ratio of the two is
# the figure that survives a noisy machine.
#
#   benches/http/run.sh                 # 2 threads, 64 connections, 30 s each
#   DURATION=60s CONNECTIONS=64 THREADS=2 AGENTS=200 benches/http/run.sh
#
# Needs wrk (Debian package `wrk`). Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-30s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
AGENTS=${AGENTS:-200}
ECHO_ADDR=127.0.0.1:18190
SB_ADDR=127.0.0.1:18191
. benches/http/lib.sh

need_wrk
echo "== building (release)"
if [ "$BIN" = target/release/switchboard ]; then
  cargo build --release --quiet --bin switchboard --example http_echo
else
  cargo build --release --quiet --example http_echo
fi

echo "== floor: bare actix-web JSON echo"
target/release/examples/http_echo "$ECHO_ADDR" 2>/dev/null &
pids+=($!)
wait_up "$ECHO_ADDR" /none
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$LUA" "http://$ECHO_ADDR" | tee /tmp/sb-wrk-echo.txt
kill "${pids[0]}"

echo "== switchboard serve (embedded default config, $AGENTS agents online on general)"
start_switchboard "$SB_ADDR" "$AGENTS" --ephemeral
sb=$SB_PID
rss_before=$(rss_kb "$sb")
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$LUA" "http://$SB_ADDR" | tee /tmp/sb-wrk-switchboard.txt
rss_after=$(rss_kb "$sb")

echo_rps=$(field requests_per_sec /tmp/sb-wrk-echo.txt)
sb_rps=$(field requests_per_sec /tmp/sb-wrk-switchboard.txt)
echo "== result"
echo "http_echo_requests_per_sec $echo_rps"
echo "http_lifecycle_requests_per_sec $sb_rps"
echo "http_lifecycle_p50_ms $(field latency_p50_ms /tmp/sb-wrk-switchboard.txt)"
echo "http_lifecycle_p99_ms $(field latency_p99_ms /tmp/sb-wrk-switchboard.txt)"
echo "http_lifecycle_non2xx $(field errors_non2xx /tmp/sb-wrk-switchboard.txt)"
echo "http_lifecycle_over_echo $(awk -v a="$sb_rps" -v b="$echo_rps" 'BEGIN {printf "%.2f", a / b}')"
echo "server_rss_before_mb $((rss_before / 1024))"
echo "server_rss_after_mb $((rss_after / 1024))"
