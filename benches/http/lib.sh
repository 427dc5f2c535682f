# Shared by benches/http/run.sh and soak.sh: start and stop servers, read figures.

LUA=benches/http/lifecycle.lua
# The server binary: BIN=path runs another build (e.g. an older commit's, to compare
# two builds in one sitting); run.sh, soak.sh and durability.sh then build no server.
BIN=${BIN:-target/release/switchboard}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

need_wrk() { command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }; }
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://$1$2" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; exit 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

# start_switchboard ADDR AGENTS [SERVE ARGS...]: serve with the embedded default config
# (and the given arguments, e.g. --ephemeral or --data-dir DIR), AGENTS agents online
# on `general`; sets SB_PID.
start_switchboard() {
  local addr=$1 agents=$2
  shift 2
  "$BIN" serve --listen "$addr" "$@" >/dev/null 2>&1 &
  SB_PID=$!
  pids+=("$SB_PID")
  wait_up "$addr" /readyz
  set -- "$addr" "$agents"
  for i in $(seq 1 "$2"); do
    curl -s -o /dev/null -X PUT "http://$1/v1/agents/a$i" -d '{"skills":["general"],"max_slots":1000}'
    curl -s -o /dev/null -X POST "http://$1/v1/agents/a$i/status" -d '{"status":"online"}'
  done
}
