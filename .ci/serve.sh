# Sourced by the CI stages that need a live server: `serve <log> <binary> <args...>`
# starts it in the background, stops it when the script exits, and returns once
# /readyz answers (on $port).
serve() {
  local log=$1 bin=$2
  shift 2
  "$bin" serve "$@" >"$log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "the server did not become ready:"; tail -30 "$log"; return 1
}
