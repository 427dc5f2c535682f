#!/usr/bin/env bash
# The cost of the cluster as processes: the lifecycle mix (open -> consumer message ->
# close, benches/http/lifecycle.lua) driven by wrk, in one run, on one PostgreSQL of the
# script's own, with the same total connections and duration:
#   1. ONE `switchboard serve` with `[store] url = "postgres://..."` and no `[cluster]`;
#   2. THREE `switchboard serve` processes forming a cluster on the same PostgreSQL
#      (`[cluster]` node_name, listen, cookie), driven all at once: one wrk per node,
#      CONNECTIONS/3 connections each, started together, so requests reach nodes that
#      do not own their conversation and are forwarded as real clients would cause.
# Each setup gets a fresh database. Prints each run's requests/s, p50, p99 and non-2xx
# (three nodes: the sum of the three wrk rates, the worst p50 and p99), the ratio
# three_nodes/one_node, the cross-node engine messages sent per lifecycle (sum over the
# nodes of switchboard_cluster_engine_messages_total{way="out"}) and the frames that carried them
# (switchboard_cluster_frames_sent_total), the requests forwarded
# per request (switchboard_http_forwarded_total), the CPU seconds each switchboard
# process (and PostgreSQL) used during the run, and CPU µs per lifecycle. A lifecycle is
# 3 requests of lifecycle.lua (open, message, close). CPU per lifecycle is the figure
# that predicts scale-out with a machine per node: `scale_out_estimate_three_machines`
# is 3 x one node's CPU per lifecycle / the cluster's (all three nodes), PostgreSQL and
# the network left out: an estimate, not a measurement. Also the store's group commits
# (count, mean time, rows per commit, rows fenced) and, from the nodes' own counts,
# which routes answered non-2xx. Expect 2 non-2xx per wrk process (so 2 for one node, 6
# for three): wrk calls request() once in its first thread before the run (to check
# for pipelining) and drops that open, so that thread's message and close of its first
# conversation answer 404.
#
#   benches/http/cluster.sh                     # 64 connections, 20 s each setup
#   DURATION=60s CONNECTIONS=96 AGENTS=200 benches/http/cluster.sh
#   NO_BUILD=1 BIN=target/release/switchboard benches/http/cluster.sh   # no cargo build
#   LOADTEST_FLAGS=--follow-owner benches/http/cluster.sh   # flags for the fixed-rate pass's loadtest
#   SKILLS=6 LOADTEST_FLAGS=--colocate benches/http/cluster.sh  # its skills; ids placed with their skill
#
# THREADS (default 2) is wrk's thread count against the one node; each of the three wrk
# gets THREADS/3 threads (at least 1). AGENTS (default 200) agents are put online on
# `general` (in the cluster, agent i through node i mod 3; each is forwarded to its
# shard's node). The cluster is ready when every node's /readyz answers 200, the nodes'
# switchboard_cluster_shards add up to 256 with each node > 0, each sees its two peers
# up, and the counts hold for 3 s.
#
# Needs wrk (Debian package `wrk`) and PostgreSQL's server binaries (`pg_config
# --bindir`; Debian package `postgresql`); as root, initdb runs as the `postgres` user.
# PostgreSQL runs with fsync=on (as tests/pg/mod.rs starts it) and the store with the
# default durability = "commit". Listens on 127.0.0.1 only; the PostgreSQL data
# directory and the nodes' logs are in a temp dir, removed after, with every process
# the script started.
#
# Second pass, at a fixed rate: at saturation the three nodes, PostgreSQL and the three
# wrk oversubscribe the cores (context switches take a share of every node's CPU), so
# CPU per lifecycle measured there overstates what a node would cost on a machine of
# its own. So on each setup, after its wrk run (same nodes, same database, wrk's agents
# and leftover conversations still there), `switchboard loadtest` (src/loadtest) runs
# open loop at RATE conversations/s (default 200) for FIXED_DURATION (default 20s),
# below saturation: `--url` the node (three nodes: every node's URL, which it uses
# round robin, so most requests reach a node that does not own their shard and are
# forwarded), `--agents 100 --skills $SKILLS --drain 10s --seed 3` (SKILLS default 2).
# It PUTs its own skills (lt-skill-0, lt-skill-1, ...) and 100 agents (max_slots 6,
# agent i on skill i mod SKILLS, a third of them also on the next), opens each agent's event stream (SSE) and puts it online; then conversation
# i is due at i/RATE s and plays one lifecycle: open (POST /v1/conversations, id named
# by the client) -> the `assigned` event on the agent's stream -> 1 to 3 agent messages
# with a consumer message between two of them unless the consumer goes quiet (p 0.2)
# -> close by the agent, 0.2-3 s apart: 4.49 requests on average (1 open, 1.75 agent
# and 0.75 consumer messages, 1 close) over ~3.5 s. At 200/s that keeps ~700
# conversations with an agent, more than the 100 x 6 slots: open -> assigned then
# includes waiting for a free agent (the requests' own latencies do not). When arrivals
# stop, lifecycles still running get 10 s (--drain), then every conversation opened is
# read back (one GET each; an open waiting over 2 s for its `assigned` event also reads
# its conversation every 2 s). Latencies run from a request's due time, not its send
# time. CPU (switchboard processes, PostgreSQL, the loadtest itself, and the machine's
# busy cores from /proc/stat) is read from just before the loadtest starts to just after
# it exits, so it includes the setup, the read-back and the nodes' idle work over the
# pass (~31 s with the defaults). This lifecycle is not wrk's and a light load batches
# little (group commits of ~2 rows, not ~50), so compare the fixed pass's one node with
# its three nodes, not with the wrk pass. Prints, prefixed fixed_one_node_ and
# fixed_three_nodes_: the loadtest's opened, lifecycles (its summary's count of
# conversations the server shows closed at the end: lifecycles completed), unfinished
# lifecycles, lost, errors (and each kind), retries on another node, open -> assigned
# p50/p99, all requests' p50/p99 and each endpoint's; the client requests the nodes
# answered on /v1 (their count less the forwarded copies), per lifecycle; the pass's
# wall time and the machine's busy cores; CPU s (and µs per lifecycle completed) of the
# nodes, PostgreSQL and the loadtest; the store's group commits; for three nodes the
# engine messages out (and per lifecycle) and requests forwarded (per request and per
# lifecycle); non-2xx by route; then fixed_cpu_per_lifecycle_three_nodes_over_one_node
# and fixed_scale_out_estimate_three_machines (as above, per lifecycle completed, which
# assumes an even split), fixed_busiest_node_share (of the three nodes' CPU) and
# fixed_scale_out_bound_by_busiest_node (one node's CPU per lifecycle over the busiest
# node's, per lifecycle of the whole cluster: what that node lets three machines do). The
# loadtest exits non-zero when it lost conversations (fixed_*_loadtest_exit).
#
#   RATE=300 FIXED_DURATION=30s NO_BUILD=1 benches/http/cluster.sh
#
# Also needs jq (reads the loadtest's JSON summary).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
AGENTS=${AGENTS:-200}
BIN=${BIN:-target/release/switchboard}
RATE=${RATE:-200}
FIXED_DURATION=${FIXED_DURATION:-20s}
LOADTEST_FLAGS=${LOADTEST_FLAGS:-}
SKILLS=${SKILLS:-2}
. benches/http/lib.sh
need_wrk
command -v jq >/dev/null || { echo "jq is missing: apt-get install jq" >&2; exit 1; }

PGBIN=$(pg_config --bindir 2>/dev/null || true)
[ -x "$PGBIN/initdb" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries (initdb) are missing: apt-get install postgresql" >&2; exit 1; }
[ "$CONNECTIONS" -ge 3 ] || { echo "CONNECTIONS must be at least 3 (one wrk per node)" >&2; exit 1; }

work=$(mktemp -d /tmp/sb-cluster-bench.XXXXXX)
chmod 755 "$work"
mkdir "$work/pg"
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$work/pg"
  as_pg() { runuser -u postgres -- "$@"; }
fi
pg_stop() { [ -f "$work/pg/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true; }
trap 'cleanup; pg_stop; rm -rf "$work"' EXIT

# next_port: sets PORT to a port nothing listens on yet, from 18200 up (skipping the
# ones already handed out).
taken=" "
next_port() {
  local p
  for p in $(seq 18200 18999); do
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken="$taken$p "
      PORT=$p
      return 0
    fi
  done
  echo "no free port in 18200-18999" >&2
  exit 1
}
# Seconds in a wrk duration (20s, 2m, 1h, or plain seconds).
seconds() {
  case "$1" in
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *) echo "$1" ;;
  esac
}
# The sum of a series' values over the lines whose labels contain $2 ("" for all),
# in the given /metrics texts, times SCALE (default 1), rounded.
msum() {
  local name=$1 label=$2
  shift 2
  awk -v n="$name" -v l="$label" -v k="${SCALE:-1}" '{ split($1, a, "{") } a[1] == n && index($1, l) { s += k * $NF } END { printf "%.0f\n", s + 0 }' "$@"
}
delta() { echo $(( $(msum "$1" "$2" "$4") - $(msum "$1" "$2" "$3") )); }
metric_of() { curl -s -m 5 "http://$1/metrics"; }
TICKS=$(getconf CLK_TCK)
# CPU ticks (user + system) of a process; with a 2nd argument, of its waited-for
# children too.
cpu_ticks() {
  local f
  f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  if [ -n "${2:-}" ]; then echo "$f" | awk '{print $12 + $13 + $14 + $15}'; else echo "$f" | awk '{print $12 + $13}'; fi
}
# PostgreSQL's CPU ticks: the postmaster with its exited children, and its live ones.
pg_ticks() {
  local pm t c
  pm=$(head -n1 "$work/pg/data/postmaster.pid")
  t=$(cpu_ticks "$pm" children)
  for c in $(ps -o pid= --ppid "$pm"); do t=$(( t + $(cpu_ticks "$c") )); done
  echo "$t"
}
secs_of() { awk -v t="$1" -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}'; }
us_per() { awk -v t="$1" -v k="$TICKS" -v n="$2" 'BEGIN {if (n > 0) printf "%.0f", 1e6 * t / k / n; else print "nan"}'; }
ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {if (b > 0) printf f, a / b; else print "nan"}'; }

if [ "${NO_BUILD:-}" != 1 ]; then
  echo "== building (release)"
  cargo build --release --quiet --bin switchboard
fi
[ -x "$BIN" ] || { echo "no switchboard binary at $BIN" >&2; exit 1; }

# wrk's summary plus its socket errors, around lifecycle.lua's own.
cat > "$work/lifecycle-errors.lua" <<LUA
dofile("$LUA")
local lifecycle_done = done
function done(summary, latency, requests)
  lifecycle_done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("errors_socket %d\n", e.connect + e.read + e.write + e.timeout))
end
LUA
WLUA=$work/lifecycle-errors.lua

echo "== PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=on; store durability = \"commit\")"
next_port; PGPORT=$PORT
as_pg "$PGBIN/initdb" -A trust -U switchboard -E UTF8 --no-sync -D "$work/pg/data" >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -w -t 60 -l "$work/pg/server.log" \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $work/pg/data -c fsync=on" start >/dev/null ||
  { cat "$work/pg/server.log" >&2; exit 1; }
for db in sb_one sb_three; do
  PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U switchboard -d postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
done
pg_url() { echo "postgres://switchboard@127.0.0.1:$PGPORT/$1"; }

# node_config FILE DB [NODE_NAME CLUSTER_PORT]: the embedded default config (its skills,
# `general` among them), the store on DB, and a [cluster] section when a name is given.
node_config() {
  {
    "$BIN" default-config
    printf '\n[store]\nurl = "%s"\n' "$(pg_url "$2")"
    if [ -n "${3:-}" ]; then
      printf '\n[cluster]\nnode_name = "%s"\nlisten = "127.0.0.1:%s"\ncookie = "bench-cluster"\n' "$3" "$4"
    fi
  } > "$1"
}
# start_node NAME ADDR CONFIG: sets NODE_PID (its output in $work/NAME.log).
start_node() {
  RUST_LOG=${RUST_LOG:-warn} NO_COLOR=1 "$BIN" serve --config "$3" --listen "$2" >"$work/$1.log" 2>&1 &
  NODE_PID=$!
  pids+=("$NODE_PID")
}
fail() {
  echo "$1" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}
wait_ready() {
  local i
  for i in $(seq 1 600); do
    [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  fail "switchboard at $1 not ready after 60 s"
}
# put_ok URL BODY [METHOD]: a request that must answer 2xx, retried while a shard moves (503).
put_ok() {
  local code i
  for i in $(seq 1 20); do
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X "${3:-PUT}" "$1" -H 'Content-Type: application/json' -d "$2")
    case "$code" in 2??) return 0 ;; 503|000) sleep 0.5 ;; *) break ;; esac
  done
  fail "$1 answered $code"
}
# register_agents ADDR...: AGENTS agents online on `general`, agent i through the
# (i mod count)-th address (a cluster forwards each to its shard's node).
register_agents() {
  local addrs=("$@") i a
  for i in $(seq 1 "$AGENTS"); do
    a=${addrs[$(( i % ${#addrs[@]} ))]}
    put_ok "http://$a/v1/agents/a$i" '{"skills":["general"],"max_slots":1000}'
    put_ok "http://$a/v1/agents/a$i/status" '{"status":"online"}' POST
  done
}
stop_nodes() {
  local p i
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 1 100); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
WRK_LIMIT=$(( $(seconds "$DURATION") + 30 ))
# run_wrk OUT THREADS CONNECTIONS ADDR PREFIX: in the background; sets WRK_PID.
run_wrk() {
  timeout -k 5 "$WRK_LIMIT" wrk -t"$2" -c"$3" -d"$DURATION" -s "$WLUA" "http://$4" -- "$5" > "$1" 2>&1 &
  WRK_PID=$!
  pids+=("$WRK_PID")
}
FIXED_LIMIT=$(( $(seconds "$FIXED_DURATION") + 180 ))
# The machine's busy and total CPU ticks, all cores (/proc/stat; idle and iowait are
# not busy).
machine_ticks() { awk '$1 == "cpu" { for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
declare -A fx
# run_fixed NAME "PID..." "ADDR...": the fixed-rate pass (see the header) against the
# nodes at ADDR... (PID... their processes, same order). The loadtest's summary goes
# to $work/fixed-NAME.json (its output to fixed-NAME.txt), each node K's /metrics
# before and after to $work/m-fixed-NAME-K-{before,after}.txt, and into fx: NAME_cpu
# (the nodes' CPU ticks), NAME_cpu_K (node K's), NAME_pg, NAME_lt (the loadtest's),
# NAME_busy and NAME_all (the machine's busy and total ticks), NAME_wall (s), NAME_rc.
run_fixed() {
  local name=$1 k a rc=0 p0 p1 l0 l1 w0 w1 cpu=0
  local node_pids=($2) node_addrs=($3) urls=() c0=() c1=() m0 m1
  for a in "${node_addrs[@]}"; do urls+=(--url "http://$a"); done
  sleep 2 # the wrk run's last commits settle
  for k in "${!node_addrs[@]}"; do metric_of "${node_addrs[$k]}" > "$work/m-fixed-$name-$((k + 1))-before.txt"; done
  echo "loadtest: $RATE conversations/s for $FIXED_DURATION (open loop), ${#node_addrs[@]} url(s) round robin, 100 agents, $SKILLS skills, drain 10s ${LOADTEST_FLAGS}"
  for k in "${!node_pids[@]}"; do c0[$k]=$(cpu_ticks "${node_pids[$k]}"); done
  p0=$(pg_ticks); m0=($(machine_ticks)); w0=$(date +%s.%N); l0=$(cpu_ticks $$ children)
  timeout -k 5 "$FIXED_LIMIT" "$BIN" loadtest "${urls[@]}" --rate "$RATE" --duration "$FIXED_DURATION" \
    --agents 100 --skills "$SKILLS" --drain 10s --seed 3 $LOADTEST_FLAGS --json "$work/fixed-$name.json" >"$work/fixed-$name.txt" 2>&1 || rc=$?
  l1=$(cpu_ticks $$ children); w1=$(date +%s.%N); m1=($(machine_ticks)); p1=$(pg_ticks)
  for k in "${!node_pids[@]}"; do c1[$k]=$(cpu_ticks "${node_pids[$k]}"); done
  for k in "${!node_addrs[@]}"; do metric_of "${node_addrs[$k]}" > "$work/m-fixed-$name-$((k + 1))-after.txt"; done
  for k in "${!node_pids[@]}"; do
    kill -0 "${node_pids[$k]}" 2>/dev/null || fail "node $((k + 1)) ($name) exited during the fixed-rate pass"
    fx[${name}_cpu_$((k + 1))]=$(( c1[k] - c0[k] ))
    cpu=$(( cpu + c1[k] - c0[k] ))
  done
  [ -s "$work/fixed-$name.json" ] || fail "the loadtest ($name) wrote no summary (exit $rc): $(tail -n 20 "$work/fixed-$name.txt")"
  fx[${name}_cpu]=$cpu
  fx[${name}_pg]=$(( p1 - p0 ))
  fx[${name}_lt]=$(( l1 - l0 ))
  fx[${name}_busy]=$(( m1[0] - m0[0] ))
  fx[${name}_all]=$(( m1[1] - m0[1] ))
  fx[${name}_wall]=$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.1f", b - a}')
  fx[${name}_rc]=$rc
}

echo "== settings"
echo "duration $DURATION"
echo "connections $CONNECTIONS"
echo "agents $AGENTS"
echo "cores $(nproc)"

# ---- 1. one node ---------------------------------------------------------------------
echo "== one node: switchboard serve, [store] on PostgreSQL (database sb_one), no [cluster]"
next_port; one_addr=127.0.0.1:$PORT
node_config "$work/one.toml" sb_one
start_node one "$one_addr" "$work/one.toml"
one_pid=$NODE_PID
wait_ready "$one_addr"
register_agents "$one_addr"
metric_of "$one_addr" > "$work/m-one-before.txt"
c0=$(cpu_ticks "$one_pid"); p0=$(pg_ticks)
echo "wrk: 1 process, $THREADS threads, $CONNECTIONS connections"
run_wrk "$work/wrk-one.txt" "$THREADS" "$CONNECTIONS" "$one_addr" "one-"
wait "$WRK_PID" || fail "wrk (one node) failed: $(cat "$work/wrk-one.txt")"
c1=$(cpu_ticks "$one_pid"); p1=$(pg_ticks)
metric_of "$one_addr" > "$work/m-one-after.txt"
kill -0 "$one_pid" 2>/dev/null || fail "the one node exited during the run"
echo "== one node: fixed rate"
run_fixed one_node "$one_pid" "$one_addr"
stop_nodes "$one_pid"
one_cpu=$(( c1 - c0 ))
one_pg=$(( p1 - p0 ))

# ---- 2. three nodes ------------------------------------------------------------------
echo "== three nodes: a cluster of three switchboard serve on PostgreSQL (database sb_three)"
addrs=()
npids=()
for i in 1 2 3; do
  next_port; addrs+=("127.0.0.1:$PORT")
  next_port; node_config "$work/node-$i.toml" sb_three "node-$i" "$PORT"
done
for i in 1 2 3; do
  start_node "node-$i" "${addrs[$((i - 1))]}" "$work/node-$i.toml"
  npids+=("$NODE_PID")
done
for a in "${addrs[@]}"; do wait_ready "$a"; done
# Ready: every shard served once, each node some, every node's two peers up, and the
# counts unchanged for 3 s (a keeper round is 2 s with the default lease: a node that
# has yet to hand shards over to a newcomer would change them).
last="" since=$SECONDS ready=0
for _ in $(seq 1 600); do
  counts="" total=0 ok=1
  for a in "${addrs[@]}"; do
    metric_of "$a" > "$work/m-poll.txt" || true
    s=$(msum switchboard_cluster_shards "" "$work/m-poll.txt")
    up=$(msum switchboard_cluster_peers 'state="up"' "$work/m-poll.txt")
    counts="$counts $s"
    total=$(( total + s ))
    [ "$s" -gt 0 ] && [ "$up" = 2 ] || ok=0
  done
  [ "$total" = 256 ] || ok=0
  if [ "$ok" = 1 ] && [ "$counts" = "$last" ]; then
    [ $(( SECONDS - since )) -ge 3 ] && { ready=1; break; }
  else
    last=$counts since=$SECONDS
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || fail "the cluster did not settle in 60 s (shards per node:$counts, total $total)"
echo "shards_per_node$counts"
register_agents "${addrs[@]}"
for i in 1 2 3; do metric_of "${addrs[$((i - 1))]}" > "$work/m-three-$i-before.txt"; done
wthreads=$(( THREADS / 3 )); [ "$wthreads" -ge 1 ] || wthreads=1
conns=( $(( CONNECTIONS / 3 + (CONNECTIONS % 3 > 0) )) $(( CONNECTIONS / 3 + (CONNECTIONS % 3 > 1) )) $(( CONNECTIONS / 3 )) )
echo "wrk: 3 processes (one per node), $wthreads thread(s) each, ${conns[*]} connections"
declare -a t0 t1
for i in 0 1 2; do t0[$i]=$(cpu_ticks "${npids[$i]}"); done
p0=$(pg_ticks)
wpids=()
for i in 0 1 2; do
  [ "${conns[$i]}" -ge "$wthreads" ] || wthreads=1
  run_wrk "$work/wrk-three-$((i + 1)).txt" "$wthreads" "${conns[$i]}" "${addrs[$i]}" "three$((i + 1))-"
  wpids+=("$WRK_PID")
done
for i in 0 1 2; do wait "${wpids[$i]}" || fail "wrk (node-$((i + 1))) failed: $(cat "$work/wrk-three-$((i + 1)).txt")"; done
for i in 0 1 2; do t1[$i]=$(cpu_ticks "${npids[$i]}"); done
p1=$(pg_ticks)
for i in 1 2 3; do metric_of "${addrs[$((i - 1))]}" > "$work/m-three-$i-after.txt"; done
for i in 0 1 2; do kill -0 "${npids[$i]}" 2>/dev/null || fail "node-$((i + 1)) exited during the run"; done
three_pg=$(( p1 - p0 ))
echo "== three nodes: fixed rate"
run_fixed three_nodes "${npids[*]}" "${addrs[*]}"

# ---- figures -------------------------------------------------------------------------
# store_figures NAME BEFORE... [--] AFTER...: the store's group commits during the run,
# summed over the nodes (one file each before and after).
store_figures() {
  local name=$1 b=() a=() f seen=0
  shift
  if [ "$#" = 2 ]; then b=("$1"); a=("$2"); else
    for f in "$@"; do
      if [ "$f" = -- ]; then seen=1; elif [ "$seen" = 0 ]; then b+=("$f"); else a+=("$f"); fi
    done
  fi
  local commits secs rows fenced
  commits=$(( $(msum switchboard_store_commit_seconds_count "" "${a[@]}") - $(msum switchboard_store_commit_seconds_count "" "${b[@]}") ))
  secs=$(awk -v a="$(SCALE=1e6 msum switchboard_store_commit_seconds_sum "" "${a[@]}")" \
    -v b="$(SCALE=1e6 msum switchboard_store_commit_seconds_sum "" "${b[@]}")" 'BEGIN {print (a - b) / 1e6}')
  rows=$(( $(msum switchboard_store_batch_rows_sum "" "${a[@]}") - $(msum switchboard_store_batch_rows_sum "" "${b[@]}") ))
  fenced=$(( $(msum switchboard_store_rows_fenced_total "" "${a[@]}") - $(msum switchboard_store_rows_fenced_total "" "${b[@]}") ))
  echo "${name}_store_commits $commits"
  echo "${name}_store_mean_commit_ms $(awk -v s="$secs" -v c="$commits" 'BEGIN {if (c > 0) printf "%.2f", 1000 * s / c; else print "nan"}')"
  echo "${name}_store_mean_rows_per_commit $(ratio "$rows" "$commits" %.1f)"
  echo "${name}_store_rows_fenced $fenced"
}
echo "== result"
w=$work/wrk-one.txt
one_rps=$(field requests_per_sec "$w")
one_req=$(field requests "$w")
one_life=$(( one_req / 3 ))
echo "one_node_requests_per_sec $one_rps"
echo "one_node_p50_ms $(field latency_p50_ms "$w")"
echo "one_node_p99_ms $(field latency_p99_ms "$w")"
echo "one_node_non2xx $(field errors_non2xx "$w")"
echo "one_node_socket_errors $(field errors_socket "$w")"
echo "one_node_lifecycles $one_life"
echo "one_node_conversations_closed $(delta switchboard_conversations_closed_total "" "$work/m-one-before.txt" "$work/m-one-after.txt")"
echo "one_node_cpu_s $(secs_of "$one_cpu")"
echo "one_node_cpu_us_per_lifecycle $(us_per "$one_cpu" "$one_life")"
echo "one_node_postgres_cpu_s $(secs_of "$one_pg")"
echo "one_node_postgres_cpu_us_per_lifecycle $(us_per "$one_pg" "$one_life")"
store_figures one_node "$work/m-one-before.txt" "$work/m-one-after.txt"

three_rps=0 three_req=0 three_non2xx=0 three_sock=0 p50=0 p99=0 three_cpu=0
closed=0 out=0 msg_in=0 refused=0 frames=0 fwd=0
for i in 1 2 3; do
  w=$work/wrk-three-$i.txt
  b=$work/m-three-$i-before.txt a=$work/m-three-$i-after.txt
  three_rps=$(( three_rps + $(field requests_per_sec "$w") ))
  three_req=$(( three_req + $(field requests "$w") ))
  three_non2xx=$(( three_non2xx + $(field errors_non2xx "$w") ))
  three_sock=$(( three_sock + $(field errors_socket "$w") ))
  p50=$(awk -v a="$p50" -v b="$(field latency_p50_ms "$w")" 'BEGIN {print (b > a ? b : a)}')
  p99=$(awk -v a="$p99" -v b="$(field latency_p99_ms "$w")" 'BEGIN {print (b > a ? b : a)}')
  cpu=$(( t1[i - 1] - t0[i - 1] ))
  three_cpu=$(( three_cpu + cpu ))
  closed=$(( closed + $(delta switchboard_conversations_closed_total "" "$b" "$a") ))
  out=$(( out + $(delta switchboard_cluster_engine_messages_total 'way="out"' "$b" "$a") ))
  msg_in=$(( msg_in + $(delta switchboard_cluster_engine_messages_total 'way="in"' "$b" "$a") ))
  refused=$(( refused + $(delta switchboard_cluster_engine_messages_total 'way="refused"' "$b" "$a") ))
  frames=$(( frames + $(delta switchboard_cluster_frames_sent_total "" "$b" "$a") ))
  f=$(delta switchboard_http_forwarded_total "" "$b" "$a")
  fwd=$(( fwd + f ))
  echo "three_nodes_node${i}_requests_per_sec $(field requests_per_sec "$w")"
  echo "three_nodes_node${i}_p50_ms $(field latency_p50_ms "$w")"
  echo "three_nodes_node${i}_p99_ms $(field latency_p99_ms "$w")"
  echo "three_nodes_node${i}_non2xx $(field errors_non2xx "$w")"
  echo "three_nodes_node${i}_forwarded $f"
  echo "three_nodes_node${i}_cpu_s $(secs_of "$cpu")"
done
three_life=$(( three_req / 3 ))
echo "three_nodes_requests_per_sec $three_rps"
echo "three_nodes_p50_ms $p50"
echo "three_nodes_p99_ms $p99"
echo "three_nodes_non2xx $three_non2xx"
echo "three_nodes_socket_errors $three_sock"
echo "three_nodes_lifecycles $three_life"
echo "three_nodes_conversations_closed $closed"
echo "three_nodes_cpu_s $(secs_of "$three_cpu")"
echo "three_nodes_cpu_us_per_lifecycle $(us_per "$three_cpu" "$three_life")"
echo "three_nodes_postgres_cpu_s $(secs_of "$three_pg")"
echo "three_nodes_postgres_cpu_us_per_lifecycle $(us_per "$three_pg" "$three_life")"
store_figures three_nodes "$work"/m-three-{1,2,3}-before.txt -- "$work"/m-three-{1,2,3}-after.txt
echo "three_nodes_engine_messages_out $out"
echo "three_nodes_engine_messages_in $msg_in"
echo "three_nodes_engine_messages_refused $refused"
echo "three_nodes_engine_messages_per_lifecycle $(ratio "$out" "$three_life")"
echo "three_nodes_frames_sent $frames"
echo "three_nodes_frames_per_lifecycle $(ratio "$frames" "$three_life")"
echo "three_nodes_forwarded_per_request $(ratio "$fwd" "$three_req" %.3f)"
echo "three_nodes_over_one_node $(ratio "$three_rps" "$one_rps")"
echo "cpu_per_lifecycle_three_nodes_over_one_node $(ratio "$(us_per "$three_cpu" "$three_life")" "$(us_per "$one_cpu" "$one_life")")"
echo "scale_out_estimate_three_machines $(ratio "$(( 3 * one_cpu * three_life ))" "$(( three_cpu * one_life ))")"

# Where non-2xx answers came from, from the nodes' own counts (a forwarded request is
# counted by the node that forwarded it and by the one that served it).
diag() {
  awk '{ split($1, a, "{") } a[1] == "switchboard_http_requests_total" && $1 !~ /status="2/ { print $1, $NF }' "$1" | sort > "$1.non2xx"
}
report_non2xx() {
  local name=$1 before=$2 after=$3
  diag "$before"; diag "$after"
  join -a 2 -e 0 -o 0,1.2,2.2 "$before.non2xx" "$after.non2xx" |
    awk -v n="$name" '$3 - $2 > 0 { printf "%s_non2xx_by_route %s %d\n", n, $1, $3 - $2 }'
}
report_non2xx one_node "$work/m-one-before.txt" "$work/m-one-after.txt"
for i in 1 2 3; do report_non2xx "three_nodes_node$i" "$work/m-three-$i-before.txt" "$work/m-three-$i-after.txt"; done

# ---- fixed-rate figures --------------------------------------------------------------
# fixed_figures NAME NODES: the fixed-rate pass NAME's figures, from the loadtest's
# summary and the NODES nodes' /metrics; sets FX_LIFE (the lifecycles completed).
fixed_figures() {
  local name=$1 n=$2 j=$work/fixed-$1.json p=fixed_$1 k b a f life reqs=0 fwd=0 closed=0 out=0 msg_in=0 refused=0 frames=0
  life=$(jq -r '.states.closed // 0' "$j")
  FX_LIFE=$life
  echo "${p}_target_rate $RATE"
  echo "${p}_achieved_rate $(jq -r '(.achieved_rate * 10 | round) / 10' "$j")"
  echo "${p}_opened $(jq -r .opened "$j")"
  echo "${p}_lifecycles $life"
  echo "${p}_unfinished_lifecycles $(jq -r .unfinished_lifecycles "$j")"
  echo "${p}_states $(jq -r '.states | to_entries | map("\(.key)=\(.value)") | join(",")' "$j")"
  echo "${p}_lost $(jq -r .lost "$j")"
  echo "${p}_errors $(jq -r .errors_total "$j")"
  jq -r --arg p "${p}_error" '.errors | to_entries[] | "\($p) \(.key): \(.value)"' "$j"
  echo "${p}_retries $(jq -r .retries "$j")"
  echo "${p}_loadtest_exit ${fx[${name}_rc]}"
  echo "${p}_open_to_assigned_p50_ms $(jq -r .assign_p50_ms "$j")"
  echo "${p}_open_to_assigned_p99_ms $(jq -r .assign_p99_ms "$j")"
  echo "${p}_requests_p50_ms $(jq -r .http_p50_ms "$j")"
  echo "${p}_requests_p99_ms $(jq -r .http_p99_ms "$j")"
  jq -r --arg p "${p}_endpoint" '.endpoints | to_entries[] | "\($p) \(.key): count \(.value.count) p50_ms \(.value.p50_ms) p99_ms \(.value.p99_ms)"' "$j"
  for k in $(seq 1 "$n"); do
    b=$work/m-fixed-$name-$k-before.txt a=$work/m-fixed-$name-$k-after.txt
    reqs=$(( reqs + $(delta switchboard_http_requests_total 'route="/v1' "$b" "$a") ))
    f=$(delta switchboard_http_forwarded_total "" "$b" "$a")
    fwd=$(( fwd + f ))
    closed=$(( closed + $(delta switchboard_conversations_closed_total "" "$b" "$a") ))
    out=$(( out + $(delta switchboard_cluster_engine_messages_total 'way="out"' "$b" "$a") ))
    msg_in=$(( msg_in + $(delta switchboard_cluster_engine_messages_total 'way="in"' "$b" "$a") ))
    refused=$(( refused + $(delta switchboard_cluster_engine_messages_total 'way="refused"' "$b" "$a") ))
    frames=$(( frames + $(delta switchboard_cluster_frames_sent_total "" "$b" "$a") ))
    if [ "$n" -gt 1 ]; then
      echo "${p}_node${k}_forwarded $f"
      echo "${p}_node${k}_cpu_s $(secs_of "${fx[${name}_cpu_$k]}")"
    fi
  done
  reqs=$(( reqs - fwd ))
  echo "${p}_requests $reqs"
  echo "${p}_requests_per_lifecycle $(ratio "$reqs" "$life")"
  echo "${p}_conversations_closed $closed"
  echo "${p}_wall_s ${fx[${name}_wall]}"
  echo "${p}_machine_cores_busy $(ratio "$(( fx[${name}_busy] * $(nproc) ))" "${fx[${name}_all]}")"
  echo "${p}_loadtest_cpu_s $(secs_of "${fx[${name}_lt]}")"
  echo "${p}_cpu_s $(secs_of "${fx[${name}_cpu]}")"
  echo "${p}_cpu_us_per_lifecycle $(us_per "${fx[${name}_cpu]}" "$life")"
  echo "${p}_postgres_cpu_s $(secs_of "${fx[${name}_pg]}")"
  echo "${p}_postgres_cpu_us_per_lifecycle $(us_per "${fx[${name}_pg]}" "$life")"
  local before=() after=()
  for k in $(seq 1 "$n"); do before+=("$work/m-fixed-$name-$k-before.txt"); after+=("$work/m-fixed-$name-$k-after.txt"); done
  if [ "$n" = 1 ]; then store_figures "$p" "${before[@]}" "${after[@]}"; else store_figures "$p" "${before[@]}" -- "${after[@]}"; fi
  if [ "$n" -gt 1 ]; then
    echo "${p}_engine_messages_out $out"
    echo "${p}_engine_messages_in $msg_in"
    echo "${p}_engine_messages_refused $refused"
    echo "${p}_engine_messages_per_lifecycle $(ratio "$out" "$life")"
    echo "${p}_frames_sent $frames"
    echo "${p}_frames_per_lifecycle $(ratio "$frames" "$life")"
    echo "${p}_forwarded $fwd"
    echo "${p}_forwarded_per_request $(ratio "$fwd" "$reqs" %.3f)"
    echo "${p}_forwarded_per_lifecycle $(ratio "$fwd" "$life")"
  fi
  for k in $(seq 1 "$n"); do
    if [ "$n" = 1 ]; then f=$p; else f=${p}_node$k; fi
    report_non2xx "$f" "$work/m-fixed-$name-$k-before.txt" "$work/m-fixed-$name-$k-after.txt"
  done
}
fixed_figures one_node 1
fx_one_life=$FX_LIFE
fixed_figures three_nodes 3
fx_three_life=$FX_LIFE
echo "fixed_cpu_per_lifecycle_three_nodes_over_one_node $(ratio "$(us_per "${fx[three_nodes_cpu]}" "$fx_three_life")" "$(us_per "${fx[one_node_cpu]}" "$fx_one_life")")"
echo "fixed_scale_out_estimate_three_machines $(ratio "$(( 3 * fx[one_node_cpu] * fx_three_life ))" "$(( fx[three_nodes_cpu] * fx_one_life ))")"
# The estimate above assumes the work splits evenly; the busiest node bounds it (keys
# that place unevenly, ids placed with a few skills): one node's CPU per lifecycle over
# the busiest node's CPU per lifecycle of the whole cluster.
busiest=0
for k in 1 2 3; do
  if [ "${fx[three_nodes_cpu_$k]}" -gt "$busiest" ]; then busiest=${fx[three_nodes_cpu_$k]}; fi
done
echo "fixed_busiest_node_share $(ratio "$busiest" "${fx[three_nodes_cpu]}" %.2f)"
echo "fixed_scale_out_bound_by_busiest_node $(ratio "$(( fx[one_node_cpu] * fx_three_life ))" "$(( busiest * fx_one_life ))")"
for f in "$work"/one.log "$work"/node-*.log; do
  n=$(grep -c -E 'WARN|ERROR' "$f" || true)
  [ "$n" = 0 ] || echo "log_warnings $(basename "$f" .log) $n"
done
stop_nodes "${npids[@]}"
