#!/usr/bin/env bash
# The cluster benchmark (issue 17): sipshard nodes sharing their location table through Redis.
#
#   scripts/bench-cluster.sh                # also: scripts/bench.sh cluster; ~8 minutes
#   scripts/bench-cluster.sh --quick        # 50,000 AORs, short trials: checks that it works
#   scripts/bench-cluster.sh --no-install   # never apt-get redis-server
#
# Placement: the node under test on CPU $SUT_CPU (0), in the lag part both nodes A and B;
# the generators (sipshard-load, scripts/cluster_lag_driver.rs, the readiness poller) and
# redis-server on CPU $GEN_CPU (1). In the throughput part redis-server runs under
# SCHED_IDLE (`chrt --idle`): it gets what the generator leaves of that CPU and never delays
# the generator's own sends and receives (which, at 80,000 REGISTER/s and ~8 µs per change,
# it otherwise did by milliseconds: the search then measured the starved generator, not the
# node); a Redis that falls behind leaves changes queued in the node, which the run reports
# (the queue's drain time). The other parts measure Redis's own delays, so there it runs
# like any process. Everything on 127.0.0.1, every node with one shard. Each part gets a fresh
# redis-server (no persistence) on a free loopback port:
#
# 1. throughput: `sipshard-load find-max register` (no authentication, $TP_USERS users in
#    turn, so first registrations, then refreshes) through one node without --redis, then
#    through one with it; the ratio of the highest clean rates (target >= 0.8x). Then each at
#    a fixed $CPU_RATE REGISTER/s for $CPU_SECONDS s: CPU µs per REGISTER of the node, and of
#    redis-server for the node with --redis.
# 2. lag: nodes A and B on one Redis; the lag driver registers fresh AORs on A at $LAG_RATE/s
#    for $LAG_SECONDS s and, for one in $SAMPLE_EVERY, sends OPTIONS for the AOR to B every
#    $PROBE_INTERVAL_US µs from A's 200 OK until B forwards one to the AOR's contact: lag
#    p50/p99/max (target p99 <= 20 ms).
# 3. ready: node A registers $AORS AORs ($FILL_RATE/s, one REGISTER each, as the memory
#    section of bench.sh) and publishes them; A stops; node B starts and the poller reads its
#    GET /ready every $READY_POLL_MS ms: the time from B's start to the first 200 (target
#    <= 10 s), and B's bindings then.
# 4. Redis memory: used_memory (INFO memory) before and after those AORs, per binding key.
#
# Output: $OUT_JSON (bench-results/cluster.json: every figure) and bench-results/cluster/ (the
# searches, runs, driver report, metrics snapshots, logs); a summary table with the targets on
# standard output. Every process started here is stopped by its PID on exit.
#
# Environment: SUT_CPU=0 GEN_CPU=1 OUT_DIR=bench-results OUT_JSON=$OUT_DIR/cluster.json
# AORS (1000000; --quick 50000) FILL_RATE=25000 TP_USERS (100000; --quick 50000) TRIAL (5; 2)
# MAX_TRIALS (12; 7) CPU_RATE=20000 CPU_SECONDS (10; 3) LAG_RATE=10000 LAG_SECONDS (10; 3)
# SAMPLE_EVERY=20 PROBE_INTERVAL_US=1000 READY_POLL_MS=10 READY_TIMEOUT=120
# MAX_LATENCY_MS=250 (find-max: clean = no failure and REGISTER->200 p99 under it)
# REDIS_FLAGS (extra sipshard flags for the nodes with --redis, e.g. "--redis-queue 100000")
# PARTS="throughput lag ready" (some of them only: the others' figures are left out).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

QUICK=0
INSTALL=1
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d'
        exit 0
        ;;
    *)
        echo "bench-cluster.sh: unknown argument $1" >&2
        exit 2
        ;;
    esac
    shift
done

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
OUT_DIR=${OUT_DIR:-$ROOT/bench-results}
DOMAIN=bench.example.com
PREFIX=bench
FILL_RATE=${FILL_RATE:-25000}
CPU_RATE=${CPU_RATE:-20000}
LAG_RATE=${LAG_RATE:-10000}
SAMPLE_EVERY=${SAMPLE_EVERY:-20}
PROBE_INTERVAL_US=${PROBE_INTERVAL_US:-1000}
READY_POLL_MS=${READY_POLL_MS:-10}
READY_TIMEOUT=${READY_TIMEOUT:-120}
MAX_LATENCY_MS=${MAX_LATENCY_MS-250}
read -r -a REDIS_FLAGS <<<"${REDIS_FLAGS:-}"
if [ "$QUICK" = 1 ]; then
    MODE=quick
    AORS=${AORS:-50000}
    TP_USERS=${TP_USERS:-50000}
    TRIAL=${TRIAL:-2}
    MAX_TRIALS=${MAX_TRIALS:-7}
    CPU_SECONDS=${CPU_SECONDS:-3}
    LAG_SECONDS=${LAG_SECONDS:-3}
else
    MODE=full
    AORS=${AORS:-1000000}
    TP_USERS=${TP_USERS:-100000}
    TRIAL=${TRIAL:-5}
    MAX_TRIALS=${MAX_TRIALS:-12}
    CPU_SECONDS=${CPU_SECONDS:-10}
    LAG_SECONDS=${LAG_SECONDS:-10}
fi
MAX_LATENCY=()
if [ -n "$MAX_LATENCY_MS" ]; then MAX_LATENCY=(--max-latency-ms "$MAX_LATENCY_MS"); fi

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------
# Processes: every one started here is tracked by PID and stopped on exit.

PIDS=()
WORK=$(mktemp -d /tmp/bench-cluster.XXXXXX)
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then bench_stop_pid "$p"; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && [ "$p" != "$1" ] && keep+=("$p"); done
    PIDS=("${keep[@]:-}")
}
stop() {
    bench_stop_pid "$1"
    forget_pid "$1"
}

# ---------------------------------------------------------------------------------------
# What the run needs.

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null 2>&1; then
        sudo=()
        [ "$(id -u)" = 0 ] || sudo=(sudo)
        log "installing: redis-server (and redis-tools)"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq redis-server redis-tools >/dev/null
    fi
fi
for tool in redis-server redis-cli curl taskset python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y redis-server redis-tools curl util-linux)"
done
ncpu=$(nproc --all)
((SUT_CPU < ncpu && GEN_CPU < ncpu)) || die "CPUs $SUT_CPU and $GEN_CPU needed, $ncpu present"

# Separate builds: with the example in the same build, dev-dependencies would change the
# features (and so the build) of the sipshard binary the other benchmarks use.
log "building (release): sipshard, sipshard-load, cluster-lag-driver"
cargo build --release --quiet --bin sipshard
cargo build --release --quiet -p sipshard-loadtest --bin sipshard-load
cargo build --release --quiet --example cluster-lag-driver
SIPSHARD="$ROOT/target/release/sipshard"
LOAD="$ROOT/target/release/sipshard-load"
DRIVER="$ROOT/target/release/examples/cluster-lag-driver"
"$SIPSHARD" --help | grep -q -- '--redis ' || die "$SIPSHARD has no --redis flag"

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
OUT_JSON=${OUT_JSON:-$OUT_DIR/cluster.json}
DIR="$OUT_DIR/cluster"
rm -rf "$DIR" "$OUT_JSON"
mkdir -p "$DIR"

# ---------------------------------------------------------------------------------------
# Helpers.

free_tcp_port() {
    python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# A SIP port free for UDP and TCP (a node listens on both).
free_sip_port() {
    python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break'
}

clk_tck=$(getconf CLK_TCK)
now() { date +%s.%N; }

# start_redis PART [SCHED...]: a fresh redis-server for PART on CPU $GEN_CPU (run by SCHED
# when given, e.g. `chrt --idle 0`); sets REDIS_PID, REDIS_PORT, REDIS_URL.
start_redis() {
    REDIS_PORT=$(free_tcp_port)
    mkdir -p "$WORK/redis-$REDIS_PORT"
    local part=$1
    shift
    taskset -c "$GEN_CPU" "$@" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK/redis-$REDIS_PORT" --daemonize no \
        >"$DIR/redis-$part.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    local i
    for ((i = 0; i < 100; i++)); do
        if [ "$(rcli PING 2>/dev/null)" = PONG ]; then return 0; fi
        sleep 0.1
    done
    cat "$DIR/redis-$part.log" >&2
    die "redis-server does not answer on port $REDIS_PORT"
}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
used_memory() { rcli INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }

# start_node NAME LOGFILE [flags...]: one sipshard with one shard on CPU $SUT_CPU, a SIP port,
# an admin and a metrics port of its own; sets NODE_PID, NODE_PORT, NODE_ADMIN, NODE_METRICS
# and NODE_T0 (the time just before it was started, also written to NODE_T0_FILE when set).
# NODE_ADMIN_ADDR: the admin address to use. Waits until it answers SIP, unless NODE_NO_WAIT=1.
start_node() {
    local name=$1 logf=$2
    shift 2
    NODE_PORT=$(free_sip_port)
    NODE_ADMIN=${NODE_ADMIN_ADDR:-127.0.0.1:$(free_tcp_port)}
    NODE_METRICS=127.0.0.1:$(free_tcp_port)
    NODE_T0=$(now)
    if [ -n "${NODE_T0_FILE:-}" ]; then echo "$NODE_T0" >"$NODE_T0_FILE"; fi
    taskset -c "$SUT_CPU" "$SIPSHARD" --listen "127.0.0.1:$NODE_PORT" --shards 1 \
        --cpus "$SUT_CPU" --log-level error --domain "$DOMAIN" --max-bindings 20000000 \
        --rcvbuf 8388608 --sndbuf 8388608 --admin "$NODE_ADMIN" --metrics "$NODE_METRICS" \
        "$@" >"$logf" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    [ "${NODE_NO_WAIT:-0}" = 1 ] && return 0
    bench_wait_sip "$NODE_PORT" || {
        cat "$logf" >&2
        die "$name does not answer on port $NODE_PORT"
    }
}

# The flags of a node on the current Redis.
redis_flags() {
    echo --redis "$REDIS_URL" --node-id "$1" --redis-prefix "$PREFIX" "${REDIS_FLAGS[@]}"
}

# wait_ready ADMIN T0 OUT: poll GET /ready every $READY_POLL_MS ms (from CPU $GEN_CPU) until
# 200 or $READY_TIMEOUT s; writes {"ready": bool, "seconds": from T0 to the first 200, ...}.
# T0 may be @FILE: the poller starts first and waits for the node's start time in FILE, so its
# own start-up is not counted.
wait_ready() {
    taskset -c "$GEN_CPU" python3 - "$1" "$2" "$3" "$READY_POLL_MS" "$READY_TIMEOUT" <<'EOF'
import http.client, json, os, sys, time
admin, t0, out, poll_ms, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
if t0.startswith("@"):
    waited = time.time()
    while time.time() - waited < 60:
        try:
            text = open(t0[1:]).read()
            if text.endswith("\n"):
                break
        except OSError:
            pass
        time.sleep(0.001)
    t0 = float(text)
else:
    t0 = float(t0)
host, port = admin.rsplit(":", 1)
first_answer = None
first_poll = None
polls = 0
ready = False
while time.time() - t0 < timeout:
    polls += 1
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=1)
        c.request("GET", "/ready")
        status = c.getresponse().status
        c.close()
    except OSError:
        status = None
    at = time.time()
    if first_poll is None:
        first_poll = at - t0
    if status is not None and first_answer is None:
        first_answer = at - t0
    if status == 200:
        ready = True
        break
    time.sleep(poll_ms / 1000)
json.dump({"ready": ready, "seconds": round(at - t0, 3) if ready else None,
           "first_poll_s": round(first_poll, 3) if first_poll is not None else None,
           "first_answer_s": round(first_answer, 3) if first_answer is not None else None,
           "polls": polls, "poll_ms": poll_ms, "timeout_s": timeout}, open(out, "w"), indent=2)
sys.exit(0 if ready else 1)
EOF
}

# metrics ADDR OUT: the node's sipshard_cluster_* series and its binding count, as JSON.
metrics() {
    curl -s --max-time 5 "http://$1/metrics" >"$2.txt" 2>/dev/null || true
    python3 - "$2.txt" "$2" <<'EOF'
import json, sys
out = {}
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("#") or not line.strip():
        continue
    name, _, value = line.rstrip("\n").rpartition(" ")
    if name.startswith("sipshard_cluster_") or name == 'sipshard_bindings{shard="total"}' \
            or name == 'sipshard_aors{shard="total"}':
        try:
            out[name] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            out[name] = value
json.dump(out, open(sys.argv[2], "w"), indent=2, sort_keys=True)
EOF
}

# A node's bindings, from its metrics (sipshard_bindings{shard="total"}).
node_bindings() {
    curl -s --max-time 5 "http://$1/metrics" 2>/dev/null |
        awk '$1 == "sipshard_bindings{shard=\"total\"}" {print $2}'
}

# Wait until the node at metrics address $1 has written everything it queued for Redis
# (sipshard_cluster_queued 0), at most 180 s; prints the seconds it took.
wait_published() {
    local t0 now q
    t0=$(date +%s.%N)
    while :; do
        q=$(curl -s --max-time 2 "http://$1/metrics" 2>/dev/null |
            awk '$1 == "sipshard_cluster_queued" {print $2}')
        now=$(date +%s.%N)
        if [ "${q:-1}" = 0 ] || python3 -c "import sys; sys.exit(0 if $now - $t0 > 180 else 1)"; then
            python3 -c "print(round($now - $t0, 2))"
            return
        fi
        sleep 0.2
    done
}

# Binding keys in Redis: a SCAN of 10,000 at a time inside Redis (redis-cli --scan asks for
# 10 per round trip).
binding_keys() {
    # shellcheck disable=SC2016
    rcli EVAL 'local n, cur = 0, "0"
repeat
    local r = redis.call("SCAN", cur, "MATCH", ARGV[1], "COUNT", 10000)
    cur = r[1]
    n = n + #r[2]
until cur == "0"
return n' 0 "$PREFIX:b:*"
}

# cpu_json OUT NAME=PID...: CPU seconds since the matching cpu_mark, per process.
declare -A CPU_MARK
cpu_mark() {
    local p
    CPU_T0=$(now)
    for p in "$@"; do CPU_MARK[$p]=$(bench_cpu_ticks "${p#*=}"); done
}
cpu_json() {
    local out=$1 p args=()
    shift
    for p in "$@"; do args+=("${p%%=*}" "${CPU_MARK[$p]}" "$(bench_cpu_ticks "${p#*=}")"); done
    python3 - "$out" "$CPU_T0" "$(now)" "$clk_tck" "${args[@]}" <<'EOF'
import json, sys
out, t0, t1, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rest = sys.argv[5:]
d = {"wall_s": round(t1 - t0, 3)}
for i in range(0, len(rest), 3):
    d[rest[i] + "_cpu_s"] = (int(rest[i + 2]) - int(rest[i + 1])) / hz
json.dump(d, open(out, "w"), indent=2)
EOF
}

# thread_ticks PID: "name ticks" per thread of a process (threads of one name summed).
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ -r "$t/stat" ]; then echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; fi
    done | awk '{n[$1] += $2} END {for (k in n) print k, n[k]}'
}

json_get() { python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

# ---------------------------------------------------------------------------------------
# 1. REGISTER throughput of one node, without and with --redis.

part_throughput() {
    local sys flags=()
    for sys in plain redis; do
        flags=()
        if [ "$sys" = redis ]; then
            start_redis throughput chrt --idle 0
            read -r -a flags <<<"$(redis_flags tp)"
        fi
        start_node "$sys" "$DIR/throughput-$sys.log" "${flags[@]}"
        if [ "$sys" = redis ]; then
            wait_ready "$NODE_ADMIN" "$NODE_T0" "$DIR/throughput-$sys-ready.json" ||
                log "throughput: the node with --redis never became ready"
        fi
        log "1. find-max register: one node, $sys ($TP_USERS users, trials of $TRIAL s)"
        taskset -c "$GEN_CPU" "$LOAD" find-max register --target "127.0.0.1:$NODE_PORT" \
            --cpus "$GEN_CPU" --threads 1 --domain "$DOMAIN" --users "$TP_USERS" \
            --rate 5000 --max-rate 256000 --duration "$TRIAL" --max-trials "$MAX_TRIALS" \
            --precision 5 --settle 3 --drain 5 -q "${MAX_LATENCY[@]}" \
            --json "$DIR/throughput-$sys-findmax.json" >"$DIR/throughput-$sys-findmax.txt" 2>&1 || true
        metrics "$NODE_METRICS" "$DIR/throughput-$sys-metrics-findmax.json"
        log "   $sys: max clean $(json_get "$DIR/throughput-$sys-findmax.json" max_clean_rate)/s;" \
            "fixed $CPU_RATE/s for $CPU_SECONDS s"
        if [ "$sys" = redis ]; then
            # Trials above what Redis writes per second leave changes queued: the fixed-rate
            # run must not be charged with writing them.
            local drained
            drained=$(wait_published "$NODE_METRICS")
            echo "{\"seconds\": $drained}" >"$DIR/throughput-$sys-drain.json"
            log "   $sys: the queue towards Redis drained $drained s after the search"
        fi
        sleep 2
        local who=("node=$NODE_PID")
        [ "$sys" = redis ] && who+=("redis=$REDIS_PID")
        thread_ticks "$NODE_PID" >"$WORK/threads0"
        cpu_mark "${who[@]}"
        taskset -c "$GEN_CPU" "$LOAD" register --target "127.0.0.1:$NODE_PORT" --cpus "$GEN_CPU" \
            --threads 1 --domain "$DOMAIN" --users "$TP_USERS" --rate "$CPU_RATE" \
            --duration "$CPU_SECONDS" --drain 5 -q --json "$DIR/throughput-$sys-fixed.json" \
            >"$DIR/throughput-$sys-fixed.txt" 2>&1 || true
        cpu_json "$DIR/throughput-$sys-fixed.cpu.json" "${who[@]}"
        thread_ticks "$NODE_PID" >"$WORK/threads1"
        # CPU seconds per thread of the node (shards, the cluster peer, ...) during the run.
        python3 - "$WORK/threads0" "$WORK/threads1" "$clk_tck" >"$DIR/throughput-$sys-threads.json" <<'EOF'
import json, sys
read = lambda p: {k: int(v) for k, v in (line.split() for line in open(p) if line.strip())}
a, b, hz = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
print(json.dumps({k: (v - a.get(k, 0)) / hz for k, v in sorted(b.items()) if v - a.get(k, 0) > 0}))
EOF
        metrics "$NODE_METRICS" "$DIR/throughput-$sys-metrics.json"
        stop "$NODE_PID"
        if [ "$sys" = redis ]; then
            rcli INFO commandstats >"$DIR/throughput-redis-commandstats.txt" 2>&1 || true
            stop "$REDIS_PID"
        fi
    done
}

# ---------------------------------------------------------------------------------------
# 2. Replication lag: A's 200 OK -> B forwards a request for the AOR.

part_lag() {
    local a_pid a_port a_metrics b_pid b_port b_metrics flags
    start_redis lag
    read -r -a flags <<<"$(redis_flags a)"
    start_node A "$DIR/lag-a.log" "${flags[@]}"
    a_pid=$NODE_PID a_port=$NODE_PORT a_metrics=$NODE_METRICS
    wait_ready "$NODE_ADMIN" "$NODE_T0" "$DIR/lag-a-ready.json" || die "lag: A never became ready"
    read -r -a flags <<<"$(redis_flags b)"
    start_node B "$DIR/lag-b.log" "${flags[@]}"
    b_pid=$NODE_PID b_port=$NODE_PORT b_metrics=$NODE_METRICS
    wait_ready "$NODE_ADMIN" "$NODE_T0" "$DIR/lag-b-ready.json" || die "lag: B never became ready"
    log "2. lag: $LAG_RATE REGISTER/s to A for $LAG_SECONDS s, 1 in $SAMPLE_EVERY probed on B" \
        "every $PROBE_INTERVAL_US µs"
    cpu_mark "a=$a_pid" "b=$b_pid" "redis=$REDIS_PID"
    taskset -c "$GEN_CPU" "$DRIVER" --a "127.0.0.1:$a_port" --b "127.0.0.1:$b_port" \
        --domain "$DOMAIN" --prefix "lag$RANDOM" --rate "$LAG_RATE" --duration "$LAG_SECONDS" \
        --sample-every "$SAMPLE_EVERY" --probe-interval-us "$PROBE_INTERVAL_US" \
        --give-up-ms 2000 --register-timeout-ms 2000 --json "$DIR/lag.json" \
        >/dev/null 2>"$DIR/lag-driver.err" || log "lag driver failed: $(cat "$DIR/lag-driver.err")"
    cpu_json "$DIR/lag.cpu.json" "a=$a_pid" "b=$b_pid" "redis=$REDIS_PID"
    metrics "$a_metrics" "$DIR/lag-a-metrics.json"
    metrics "$b_metrics" "$DIR/lag-b-metrics.json"
    rcli INFO commandstats >"$DIR/lag-redis-commandstats.txt" 2>&1 || true
    log "   lag p50 $(json_get "$DIR/lag.json" lag_ms.p50) ms, p99 $(json_get "$DIR/lag.json" lag_ms.p99) ms," \
        "$(json_get "$DIR/lag.json" samples_routed) of $(json_get "$DIR/lag.json" samples) samples routed"
    stop "$a_pid"
    stop "$b_pid"
    stop "$REDIS_PID"
}

# ---------------------------------------------------------------------------------------
# 3 and 4. $AORS AORs into Redis through A; Redis's memory; a new node B's time to ready.

part_ready() {
    local flags dur before after keys a_pid i last cur stable b_bind b_later
    start_redis ready
    read -r -a flags <<<"$(redis_flags a)"
    start_node A "$DIR/ready-a.log" "${flags[@]}"
    a_pid=$NODE_PID
    wait_ready "$NODE_ADMIN" "$NODE_T0" "$DIR/ready-a-ready.json" || die "ready: A never became ready"
    sleep 1
    before=$(used_memory)
    dur=$(python3 -c "import math; print(math.ceil($AORS / $FILL_RATE))")
    log "3. $AORS AORs registered through A ($FILL_RATE/s, $dur s)"
    cpu_mark "a=$a_pid" "redis=$REDIS_PID"
    # Exactly one REGISTER per AOR: rate x duration = AORs.
    taskset -c "$GEN_CPU" "$LOAD" register --target "127.0.0.1:$NODE_PORT" --cpus "$GEN_CPU" \
        --threads 1 --domain "$DOMAIN" --users "$AORS" \
        --rate "$(python3 -c "print($AORS / $dur)")" --duration "$dur" --drain 10 -q \
        --json "$DIR/ready-fill.json" >"$DIR/ready-fill.txt" 2>&1 || true
    # Until A has published everything: its published counter and Redis's key count still for
    # 2 s (at most 120 s).
    last="" stable=0
    for ((i = 0; i < 240 && stable < 4; i++)); do
        sleep 0.5
        cur="$(curl -s --max-time 2 "http://$NODE_METRICS/metrics" |
            awk '$1 == "sipshard_cluster_published_total" {print $2}') $(rcli DBSIZE)"
        if [ "$cur" = "$last" ]; then stable=$((stable + 1)); else stable=0; fi
        last=$cur
    done
    cpu_json "$DIR/ready-fill.cpu.json" "a=$a_pid" "redis=$REDIS_PID"
    metrics "$NODE_METRICS" "$DIR/ready-a-metrics.json"
    after=$(used_memory)
    keys=$(binding_keys)
    {
        echo "used_memory_before $before"
        echo "used_memory_after $after"
        echo "binding_keys $keys"
        echo "dbsize $(rcli DBSIZE)"
        # Each node appends to a stream of its own (PREFIX:stream:NODE); A filled this one.
        echo "stream_length $(rcli XLEN "$PREFIX:stream:a")"
        echo "stream_memory_usage $(rcli MEMORY USAGE "$PREFIX:stream:a" SAMPLES 0)"
    } >"$DIR/ready-redis.txt"
    rcli INFO memory >"$DIR/ready-redis-info-memory.txt"
    log "4. Redis: used_memory $before -> $after bytes, $keys binding keys"
    stop "$a_pid"
    sleep 1
    log "3. a new node B on the $keys bindings in Redis: time to GET /ready = 200"
    read -r -a flags <<<"$(redis_flags b)"
    local admin poller
    admin=127.0.0.1:$(free_tcp_port)
    wait_ready "$admin" "@$WORK/b.t0" "$DIR/ready-b-ready.json" &
    poller=$!
    sleep 1 # the poller is up
    cpu_mark "redis=$REDIS_PID"
    NODE_NO_WAIT=1 NODE_ADMIN_ADDR=$admin NODE_T0_FILE=$WORK/b.t0 start_node B "$DIR/ready-b.log" "${flags[@]}"
    CPU_MARK["b=$NODE_PID"]=0 # from its start
    wait "$poller" || log "B was not ready within $READY_TIMEOUT s"
    cpu_json "$DIR/ready-b.cpu.json" "b=$NODE_PID" "redis=$REDIS_PID"
    b_bind=$(node_bindings "$NODE_METRICS")
    metrics "$NODE_METRICS" "$DIR/ready-b-metrics.json"
    sleep 2
    b_later=$(node_bindings "$NODE_METRICS")
    echo "{\"bindings_at_ready\": ${b_bind:-null}, \"bindings_2s_later\": ${b_later:-null}," \
        "\"rss_kib\": $(awk '/^VmRSS:/ {print $2}' "/proc/$NODE_PID/status")}" >"$DIR/ready-b-bindings.json"
    log "   B ready after $(json_get "$DIR/ready-b-ready.json" seconds) s with ${b_bind:-?} bindings" \
        "(${b_later:-?} 2 s later)"
    stop "$NODE_PID"
    stop "$REDIS_PID"
}

# ---------------------------------------------------------------------------------------

start=$(date +%s)
log "mode $MODE; placement: node(s) under test on CPU $SUT_CPU; sipshard-load, the lag driver," \
    "the readiness poller and redis-server on CPU $GEN_CPU; $ncpu CPUs; $(redis-server --version | cut -d' ' -f1-3)"
for part in ${PARTS:-throughput lag ready}; do "part_$part"; done
log "parts done in $(($(date +%s) - start)) s"

python3 - "$DIR" "$OUT_JSON" "$MODE" "$SUT_CPU" "$GEN_CPU" "$AORS" "$CPU_RATE" "$LAG_RATE" \
    "$(redis-server --version)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF'
import datetime, json, os, sys
d, out, mode, sut, gen, aors, cpu_rate, lag_rate, redis_version, rev = sys.argv[1:11]

def load(name):
    try:
        return json.load(open(os.path.join(d, name)))
    except (OSError, ValueError):
        return {}

def ratio(a, b, digits=2):
    return round(a / b, digits) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None

def per(cpu_s, n, scale=1e6, digits=2):
    return round(cpu_s / n * scale, digits) if isinstance(cpu_s, (int, float)) and n else None

res = {"mode": mode, "revision": rev, "redis_version": redis_version,
       "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "placement": {"node_cpu": int(sut), "generator_and_redis_cpu": int(gen)},
       "loadavg": open("/proc/loadavg").read().split()[:3]}

# 1. Throughput.
tp = {}
for s in ("plain", "redis"):
    fm, fx, cpu = load(f"throughput-{s}-findmax.json"), load(f"throughput-{s}-fixed.json"), load(f"throughput-{s}-fixed.cpu.json")
    ok = fx.get("succeeded") or 0
    tp[s] = {
        "max_clean_rate": fm.get("max_clean_rate"),
        "first_unclean_rate": fm.get("first_unclean_rate"),
        "generator_limited": fm.get("generator_limited"),
        "verdict": fm.get("verdict"),
        "fixed_rate": {"target_rate": fx.get("target_rate"), "achieved_rate": fx.get("achieved_rate"),
                       "succeeded": ok, "failed": fx.get("failed"),
                       "node_cpu_us_per_register": per(cpu.get("node_cpu_s"), ok),
                       "redis_cpu_us_per_register": per(cpu.get("redis_cpu_s"), ok),
                       "node_cpu_share": ratio(cpu.get("node_cpu_s"), cpu.get("wall_s"), 3),
                       "redis_cpu_share": ratio(cpu.get("redis_cpu_s"), cpu.get("wall_s"), 3)},
        "node_thread_cpu_us_per_register": {k: per(v, ok) for k, v in load(f"throughput-{s}-threads.json").items()},
        "cluster_metrics": load(f"throughput-{s}-metrics.json") if s == "redis" else None,
    }
tp["ratio_redis_over_plain"] = ratio(tp["redis"]["max_clean_rate"], tp["plain"]["max_clean_rate"])
tp["cpu_ratio_redis_over_plain"] = ratio(tp["redis"]["fixed_rate"]["node_cpu_us_per_register"],
                                         tp["plain"]["fixed_rate"]["node_cpu_us_per_register"])
# What one core would sustain, from the CPU per REGISTER: plain's cost / redis's.
tp["capacity_ratio_from_cpu"] = ratio(tp["plain"]["fixed_rate"]["node_cpu_us_per_register"],
                                      tp["redis"]["fixed_rate"]["node_cpu_us_per_register"])
res["throughput"] = tp

# 2. Lag.
lag, lcpu = load("lag.json"), load("lag.cpu.json")
ok = lag.get("registers_ok") or 0
res["lag"] = {**lag, "cpu": {"a_cpu_us_per_register": per(lcpu.get("a_cpu_s"), ok),
                              "b_cpu_us_per_register": per(lcpu.get("b_cpu_s"), ok),
                              "redis_cpu_us_per_register": per(lcpu.get("redis_cpu_s"), ok),
                              **lcpu},
              "a_metrics": load("lag-a-metrics.json"), "b_metrics": load("lag-b-metrics.json")}

# 3. Ready, 4. Redis memory.
kv = {}
try:
    for line in open(os.path.join(d, "ready-redis.txt")):
        k, _, v = line.strip().partition(" ")
        kv[k] = int(v) if v.lstrip("-").isdigit() else None
except OSError:
    pass
fill, fcpu, bready, bb, bcpu = (load("ready-fill.json"), load("ready-fill.cpu.json"), load("ready-b-ready.json"),
                                load("ready-b-bindings.json"), load("ready-b.cpu.json"))
keys = kv.get("binding_keys")
grown = (kv["used_memory_after"] - kv["used_memory_before"]) if "used_memory_after" in kv and "used_memory_before" in kv else None
res["ready"] = {
    "aors": int(aors), "registered": fill.get("succeeded"), "register_failed": fill.get("failed"),
    "fill_rate": fill.get("achieved_rate"),
    "a_cpu_us_per_register": per(fcpu.get("a_cpu_s"), fill.get("succeeded")),
    "redis_cpu_us_per_register": per(fcpu.get("redis_cpu_s"), fill.get("succeeded")),
    "a_metrics": load("ready-a-metrics.json"),
    "binding_keys_in_redis": keys,
    "b_ready": bready.get("ready"), "b_seconds_to_ready": bready.get("seconds"),
    "b_first_poll_s": bready.get("first_poll_s"), "b_first_admin_answer_s": bready.get("first_answer_s"),
    "poll_ms": bready.get("poll_ms"),
    "b_bindings_at_ready": bb.get("bindings_at_ready"), "b_bindings_2s_later": bb.get("bindings_2s_later"),
    "b_rss_kib": bb.get("rss_kib"), "b_cpu_s_to_ready": bcpu.get("b_cpu_s"),
    "redis_cpu_s_during_b_load": bcpu.get("redis_cpu_s"),
    "b_metrics": load("ready-b-metrics.json"),
}
res["ready"]["b_holds_all"] = bool(keys) and bb.get("bindings_at_ready") == keys and keys >= int(aors)
res["redis_memory"] = {
    "used_memory_before": kv.get("used_memory_before"), "used_memory_after": kv.get("used_memory_after"),
    "binding_keys": keys, "dbsize": kv.get("dbsize"), "stream_length": kv.get("stream_length"),
    "stream_memory_usage": kv.get("stream_memory_usage"),
    "bytes_per_binding": round(grown / keys, 1) if grown is not None and keys else None,
    "bytes_per_binding_without_stream": round((grown - (kv.get("stream_memory_usage") or 0)) / keys, 1)
        if grown is not None and keys else None,
}

# The summary with the targets.
def f(v, spec=",.0f"):
    return "-" if v is None or isinstance(v, bool) else format(v, spec)

def verdict(ok):
    return "-" if ok is None else ("PASS" if ok else "FAIL")

p, r = tp["plain"], tp["redis"]
lim = lambda s: " (generator-limited)" if s.get("generator_limited") else ""
lm = res["lag"].get("lag_ms", {})
rd, rm = res["ready"], res["redis_memory"]
# A search the generator limited gives a lower bound for that node's rate: a ratio with it
# on top is a lower bound (it may pass, not fail), with it below an upper bound.
tr = tp["ratio_redis_over_plain"]
if tr is None:
    tr_text, tr_verdict = "-", None
elif r.get("generator_limited") and not p.get("generator_limited"):
    tr_text, tr_verdict = f"{tr:.2f}x (a lower bound)", (True if tr >= 0.8 else None)
elif p.get("generator_limited") and not r.get("generator_limited"):
    tr_text, tr_verdict = f"{tr:.2f}x (an upper bound)", (False if tr < 0.8 else None)
else:
    tr_text, tr_verdict = f"{tr:.2f}x", (None if r.get("generator_limited") else tr >= 0.8)
cr = tp["capacity_ratio_from_cpu"]
rows = [
    ("REGISTER/s, one node: with --redis / without (find-max)",
     f"{f(r['max_clean_rate'])}{lim(r)} / {f(p['max_clean_rate'])}{lim(p)} = {tr_text}",
     ">= 0.8x", verdict(tr_verdict) if tr_verdict is not None or tr is None else "inconclusive"),
    (f"node CPU µs per REGISTER at {f(float(cpu_rate))}/s: with / without (one core's REGISTER/s ratio)",
     f"{f(r['fixed_rate']['node_cpu_us_per_register'], '.2f')} / {f(p['fixed_rate']['node_cpu_us_per_register'], '.2f')}"
     f" ({f(cr, '.2f')}x)", ">= 0.8x", verdict(None if cr is None else cr >= 0.8)),
    (f"redis-server CPU µs per REGISTER at {f(float(cpu_rate))}/s",
     f"{f(r['fixed_rate']['redis_cpu_us_per_register'], '.2f')} ({f(r['fixed_rate']['redis_cpu_share'], '.2f')} of a core)", "-", ""),
    (f"lag A 200 OK -> B routes, {f(float(lag_rate))} REGISTER/s: p50 / p99 / max ms",
     f"{f(lm.get('p50'), '.2f')} / {f(lm.get('p99'), '.2f')} / {f(lm.get('max'), '.2f')} "
     f"({f(lag.get('samples_routed'))} of {f(lag.get('samples'))} samples routed)",
     "p99 <= 20 ms", verdict(None if lm.get("p99") is None else (lm["p99"] <= 20 and not lag.get("samples_not_routed")))),
    (f"new node ready with {f(keys)} bindings in Redis, s",
     f"{f(rd['b_seconds_to_ready'], '.2f')} ({f(rd['b_bindings_at_ready'])} bindings at ready)",
     "<= 10 s", verdict(None if rd["b_seconds_to_ready"] is None else (rd["b_seconds_to_ready"] <= 10 and rd["b_holds_all"]))),
    ("Redis bytes per binding (used_memory growth / binding keys; without the stream)",
     f"{f(rm['bytes_per_binding'], '.1f')} ({f(rm['bytes_per_binding_without_stream'], '.1f')})", "-", ""),
]
lines = [f"Cluster ({mode}, revision {rev}): nodes on CPU {sut}, generator and redis-server on CPU {gen}; "
         f"Redis {redis_version.split(' v=')[-1].split(' ')[0]}.", "",
         "| figure | measured | target | |", "|---|---:|---:|---|"]
lines += [f"| {a} | {b} | {c} | {v} |" for a, b, c, v in rows]
res["summary_rows"] = [list(r) for r in rows]
json.dump(res, open(out, "w"), indent=2)
print("\n".join(lines))
print(f"\n{out}")
EOF
log "done in $(($(date +%s) - start)) s: $OUT_JSON, $DIR/"
