#!/usr/bin/env bash
# The whole benchmark in one command: sipshard next to Kamailio 5.6, a bare UDP forwarder and
# SIPp, every figure measured in the same run.
#
#   scripts/bench.sh                    # every section, 25-30 minutes
#   scripts/bench.sh --quick            # short trials, 50,000 AORs: checks that it all works
#   scripts/bench.sh forward calls      # only these sections (others' results are kept)
#   scripts/bench.sh --no-install ...   # never apt-get / pip anything
#
# Sections (in this order when none is named):
#
#   forward     CPU us per forwarded message and saturation rate: sipshard (1 shard; and
#               sipshard-mmsg, its recvmmsg receive instead of the io_uring one), sipshard
#               with 2 shards (scaling row), Kamailio (1 UDP worker, usrloc lookup + stateless
#               forward), udp-floor (recvmmsg/sendmmsg, the floor), floor-uring (the same on
#               io_uring: multishot receive, provided buffers; floor-uring-mmsg: that receive
#               with one sendmmsg per turn); system calls per forwarded message (perf).
#               scripts/bench-forward.sh.
#   calls       `sipshard-load find-max call` through sipshard (1 shard), sipshard (2 shards,
#               scaling row) and Kamailio (1 worker, stateless); then calls at 50 % and 90 % of
#               each found rate: INVITE->200 p50/p99/p99.9, CPU per call, hgrm + csv files.
#   register    challenged REGISTER (Digest, qop=auth): `sipshard-load find-max register` (the
#               highest clean open-loop rate) and scripts/bench-register-auth.sh (closed-loop
#               throughput), sipshard (1 shard) vs Kamailio (1 worker).
#   generators  sipshard-load vs SIPp's built-in uac/uas: CPU per call, each one's own
#               ceiling, and each one's clean rate through the same 1-shard sipshard.
#               scripts/bench-loadgen.sh.
#   tcp         forwarding over persistent TCP connections (scripts/bench-forward.sh with the
#               sipshard-tcp and kamailio-tcp systems): sipshard (1 shard) vs Kamailio (1 TCP
#               worker), CPU us per message at 20,000/s and saturation, sipshard's own UDP row
#               in the same run, and the memory of 10,000 idle connections for both.
#   tls         the same over TLS (sipshard-tls, kamailio-tls: Kamailio's TLS module, one TCP
#               worker; ECDSA P-256), then scripts/bench-tls.sh: full and resumed handshakes/s
#               and the CPU each costs, for both, and sipshard's forwarding latency during a
#               storm of full handshakes (what its handshake gate shed).
#   memory      resident bytes per registered AOR per shard: 1,000,000 AORs registered with
#               `sipshard-load register` into sipshard with 1 and with 2 shards (VmRSS before
#               and after); and the location table alone (cargo bench --bench location_memory).
#   hep         (only when named: `scripts/bench.sh hep`) forwarding at the fixed rate with full
#               SIP capture over TCP and over UDP next to plain sipshard, two rounds
#               ($HEP_SYSTEMS): the ratios sipshard-hep-stream/sipshard and sipshard-hep/sipshard
#               against the 1.3x target (docs/operations.md, SIP capture).
#   cluster     (only when named: `scripts/bench.sh cluster`) nodes sharing the location table
#               through Redis (scripts/bench-cluster.sh): REGISTER/s of one node with --redis
#               against without (target >= 0.8x) and the CPU of node and redis-server; the lag
#               from A's 200 OK to B routing the AOR at 10,000 REGISTER/s (p99 <= 20 ms); a new
#               node's time to ready with $MEMORY_AORS AORs in Redis (<= 10 s); Redis bytes per
#               binding. Results in bench-results/cluster.json and bench-results/cluster/.
#   robustness  (only when named: `scripts/bench.sh robustness`, runs alone) the mutation
#               suite's cases through sipshard and Kamailio with sanity_check(), per mutated
#               field forwarded/refused/dropped for both: scripts/bench-robustness.sh.
#
# The system under test runs on CPU $SUT_CPU (0), the generator on CPU $GEN_CPU (1). The
# 2-shard rows put the second shard on the generator's CPU: on a 2-CPU machine they show what
# a second shard costs when it has no core of its own, not how sipshard scales.
#
# Output: bench-results/<section>.json and the load generator's files (bench-results/calls/:
# find-max JSON, per-run JSON, .hgrm, .csv), bench-results/summary.json (every figure, from
# scripts/bench-summary.py), docs/benchmarks-results.md (the tables, generated), the short table
# in README.md (between its bench-summary markers) and the plots in docs/img/ (scripts/plot.py).
# Every process started here is stopped by its PID on exit.
#
# Environment: SUT_CPU=0 GEN_CPU=1 OUT_DIR=bench-results DOCS=1 (0: do not regenerate
# docs/benchmarks-results.md, README's table and docs/img),
# FORWARD_SYSTEMS="sipshard sipshard-mmsg sipshard-2shards kamailio floor floor-uring floor-uring-mmsg", HEP_SYSTEMS (see hep above),
# CALL_SYSTEMS="sipshard sipshard-2shards kamailio", TCP_SYSTEMS="sipshard-tcp kamailio-tcp
# sipshard", MEMORY_AORS (1000000, --quick 50000),
# MAX_LATENCY_MS=250 (find-max: a trial is clean with zero failures and the main latency's p99
# under this; empty for failures only, as RFC 7502).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ALL_SECTIONS="forward calls register generators tcp tls memory"
QUICK=0
INSTALL=1
SECTIONS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d'
        exit 0
        ;;
    forward | calls | register | generators | tcp | tls | memory | hep | cluster) SECTIONS+=("$1") ;;
    robustness) exec "$ROOT/scripts/bench-robustness.sh" ;;
    *)
        echo "bench.sh: unknown argument $1 (sections: $ALL_SECTIONS)" >&2
        exit 2
        ;;
    esac
    shift
done
[ ${#SECTIONS[@]} -gt 0 ] || read -r -a SECTIONS <<<"$ALL_SECTIONS"

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
OUT_DIR=${OUT_DIR:-$ROOT/bench-results}
DOCS=${DOCS:-1}
FORWARD_SYSTEMS=${FORWARD_SYSTEMS:-"sipshard sipshard-mmsg sipshard-2shards kamailio floor floor-uring floor-uring-mmsg"}
HEP_SYSTEMS=${HEP_SYSTEMS:-"sipshard sipshard-hep-stream sipshard-hep sipshard sipshard-hep-stream sipshard-hep"}
CALL_SYSTEMS=${CALL_SYSTEMS:-"sipshard sipshard-2shards kamailio"}
TCP_SYSTEMS=${TCP_SYSTEMS:-"sipshard-tcp kamailio-tcp sipshard"}
TLS_SYSTEMS=${TLS_SYSTEMS:-"sipshard-tls kamailio-tls sipshard"}
DOMAIN=bench.example.com
PASSWORD=bench-pw
# Socket buffers of the proxies in the calls section (forward uses the same 4 MiB; the kernel
# caps them at net.core.rmem_max / wmem_max).
SOCKBUF=4194304
# A clean find-max trial: zero failures (RFC 7502) and the main latency's p99 (INVITE->200,
# REGISTER->200) under this many ms. 250 is half of T1: no attempt needed a retransmission.
# Empty: failures only.
MAX_LATENCY_MS=${MAX_LATENCY_MS-250}
MAX_LATENCY=()
if [ -n "$MAX_LATENCY_MS" ]; then MAX_LATENCY=(--max-latency-ms "$MAX_LATENCY_MS"); fi

# Durations. Full, on a 2-CPU VM: forward ~10 min, calls ~6, register ~4, generators ~5,
# memory ~2.
if [ "$QUICK" = 1 ]; then
    MODE=quick
    FWD_ENV=(FIXED_WINDOW=2 RAMP_WINDOW=1 WARMUP=0.5 RAMP_FACTOR=1.6 RAMP_START=20000)
    TRIAL=2           # find-max trial seconds
    MAX_TRIALS=7
    RUN_SECONDS=3     # the 50 % / 90 % runs
    REG_TRIAL=2
    AUTH_ENV=(DURATION=2 WARMUP=1 RUNS=1)
    GEN_ARGS=(--duration 2 --sipp-rates "500 1000 2000 4000")
    MEMORY_AORS=${MEMORY_AORS:-50000}
    MEMORY_RATE=25000
else
    MODE=full
    FWD_ENV=(FIXED_WINDOW=5 RAMP_WINDOW=2 WARMUP=1)
    TRIAL=5
    MAX_TRIALS=12
    RUN_SECONDS=10
    REG_TRIAL=5
    AUTH_ENV=(DURATION=10 WARMUP=2 RUNS=3)
    GEN_ARGS=(--duration 5)
    MEMORY_AORS=${MEMORY_AORS:-1000000}
    MEMORY_RATE=25000
fi

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------
# Processes: every one started here is tracked by PID and stopped on exit.

PIDS=()
WORK=$(mktemp -d /tmp/bench.XXXXXX)
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

# ---------------------------------------------------------------------------------------
# What the run needs: packages when missing, release builds.

need_pkgs=()
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need_pkgs+=(kamailio)
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
[ -x /usr/bin/time ] || need_pkgs+=(time)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
if [ "$DOCS" = 1 ] && ! plot_python >/dev/null; then
    need_pkgs+=(python3-matplotlib)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null 2>&1; then
        sudo=()
        [ "$(id -u)" = 0 ] || sudo=(sudo)
        log "installing: ${need_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        log "missing: ${need_pkgs[*]} (apt-get install -y ${need_pkgs[*]})"
    fi
fi
if [ "$DOCS" = 1 ] && ! plot_python >/dev/null; then
    if [ "$INSTALL" = 1 ]; then
        pip install --quiet matplotlib 2>/dev/null || pip install --quiet --break-system-packages matplotlib ||
            log "matplotlib could not be installed: no plots"
    fi
fi
export PATH="$PATH:/usr/sbin"
for tool in cargo python3 taskset kamailio sipp; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
ncpu=$(nproc --all)
((SUT_CPU < ncpu && GEN_CPU < ncpu)) || die "CPUs $SUT_CPU and $GEN_CPU needed, $ncpu present"

log "building (release): sipshard, sipshard-load, register-auth-driver, udp-tools"
cargo build --release --quiet --bin sipshard # alone: see scripts/bench-register-auth.sh
cargo build --release --quiet --example register-auth-driver
cargo build --release --quiet -p sipshard-loadtest --bin sipshard-load
cargo build --release --quiet -p udp-tools
SIPSHARD="$ROOT/target/release/sipshard"
LOAD="$ROOT/target/release/sipshard-load"

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# ---------------------------------------------------------------------------------------
# Helpers.

vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# start_sut NAME PORT LOG [extra sipshard flags...]: sets SUT_PID. NAME: sipshard,
# sipshard-2shards, kamailio (scripts/kamailio-loadgen.cfg, 1 worker, stateless) or
# kamailio-auth (scripts/kamailio-auth.cfg, needs $WORK/kamailio-auth.cfg).
start_sut() {
    local name=$1 port=$2 logf=$3
    shift 3
    case "$name" in
    sipshard)
        taskset -c "$SUT_CPU" "$SIPSHARD" --listen "127.0.0.1:$port" --shards 1 \
            --cpus "$SUT_CPU" --log-level error "$@" >"$logf" 2>&1 &
        ;;
    sipshard-2shards)
        taskset -c "$SUT_CPU,$GEN_CPU" "$SIPSHARD" --listen "127.0.0.1:$port" --shards 2 \
            --cpus "$SUT_CPU,$GEN_CPU" --log-level error "$@" >"$logf" 2>&1 &
        ;;
    kamailio)
        mkdir -p "$WORK/kamailio-$port"
        # Own session: Kamailio signals its process group when it stops.
        setsid taskset -c "$SUT_CPU" kamailio -f "$ROOT/scripts/kamailio-loadgen.cfg" -DD -E \
            -m 1024 -M 16 -w "$WORK/kamailio-$port" -Y "$WORK/kamailio-$port" \
            -A "LISTEN=udp:127.0.0.1:$port" -A "CHILDREN=1" -A STATELESS \
            -A "MAXBUFFER=$SOCKBUF" >"$logf" 2>&1 &
        ;;
    kamailio-auth)
        mkdir -p "$WORK/kamailio-$port"
        sed -e "s/LISTEN/127.0.0.1:$port/; s/DOMAIN/$DOMAIN/; s/PASSWORD/$PASSWORD/" \
            -e "s/SECRET/$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')/" \
            scripts/kamailio-auth.cfg >"$WORK/kamailio-auth-$port.cfg"
        setsid taskset -c "$SUT_CPU" kamailio -f "$WORK/kamailio-auth-$port.cfg" -DD -E \
            -m 1024 -M 32 -Y "$WORK/kamailio-$port" >"$logf" 2>&1 &
        ;;
    *) die "unknown system $name" ;;
    esac
    SUT_PID=$!
    PIDS+=("$SUT_PID")
    bench_wait_sip "$port" || {
        cat "$logf" >&2
        die "$name does not answer on port $port"
    }
}

stop_sut() {
    bench_stop_pid "$SUT_PID"
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" != "$SUT_PID" ] && keep+=("$p"); done
    PIDS=("${keep[@]:-}")
    sleep 1
}

json_get() { python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

# When and how each section ran (bench-results/run.json, merged into the summary).
mark_section() {
    python3 - "$OUT_DIR/run.json" "$1" "$MODE" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$MAX_LATENCY_MS" <<'EOF'
import datetime, json, os, sys
path, section, mode, rev, max_latency = sys.argv[1:6]
doc = json.load(open(path)) if os.path.exists(path) else {}
doc.setdefault("sections", {})[section] = {
    "mode": mode, "revision": rev,
    "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "loadavg": open("/proc/loadavg").read().split()[:3],
}
if section in ("calls", "register"):
    doc["sections"][section]["max_latency_ms"] = float(max_latency) if max_latency else None
json.dump(doc, open(path, "w"), indent=2)
EOF
}

# ---------------------------------------------------------------------------------------
# Sections.

# scripts/bench-forward.sh for systems $2, results in $OUT_DIR/$1.json and $OUT_DIR/raw-$1/.
run_forward() {
    local name=$1 systems=$2
    rm -rf "$OUT_DIR/$name.json" "$OUT_DIR/raw-$name"
    env "${FWD_ENV[@]}" SYSTEMS="$systems" SUT_CPU="$SUT_CPU" FLOOD_CPU="$GEN_CPU" \
        MEMORY=0 OUT_DIR="$OUT_DIR" OUT_JSON="$OUT_DIR/$name.json" RAW="$OUT_DIR/raw-$name" \
        scripts/bench-forward.sh
}

section_forward() {
    log "== forward: CPU per message and saturation ($FORWARD_SYSTEMS)"
    run_forward forward "$FORWARD_SYSTEMS"
}

# Not among the default sections: what SIP capture costs, at the fixed rate only.
section_hep() {
    log "== hep: forwarding with full SIP capture ($HEP_SYSTEMS)"
    FWD_ENV+=(RAMP=0)
    run_forward hep "$HEP_SYSTEMS"
}

section_tcp() {
    log "== tcp: forwarding over persistent connections ($TCP_SYSTEMS)"
    run_forward tcp "$TCP_SYSTEMS"
}

section_tls() {
    log "== tls: forwarding over TLS connections ($TLS_SYSTEMS), handshakes, the storm"
    run_forward tls "$TLS_SYSTEMS"
    local quick=()
    [ "$QUICK" = 1 ] && quick=(DURATION=2 STORM_WINDOW=2)
    env "${quick[@]}" SUT_CPU="$SUT_CPU" GEN_CPU="$GEN_CPU" OUT_DIR="$OUT_DIR" \
        OUT_JSON="$OUT_DIR/tls-handshakes.json" RAW="$OUT_DIR/raw-tls-handshakes" \
        scripts/bench-tls.sh
}

# One system through find-max and the two fixed-rate runs.
calls_one() {
    local name=$1 dir="$OUT_DIR/calls" port rate t0 t1 c0 c1 bufs=()
    [[ "$name" == sipshard* ]] && bufs=(--rcvbuf "$SOCKBUF" --sndbuf "$SOCKBUF")
    # Nothing of an earlier run may pass for this one's.
    rm -rf "$dir/$name"-* "$dir/$name.log"
    port=$(bench_free_port)
    log "-- calls: $name on 127.0.0.1:$port"
    start_sut "$name" "$port" "$dir/$name.log" "${bufs[@]}"
    # Stateless proxies keep nothing between trials: a short rest is enough after a failed one.
    taskset -c "$GEN_CPU" "$LOAD" find-max call --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
        --threads 1 --users 100 --rate 1000 --max-rate 64000 --duration "$TRIAL" \
        --max-trials "$MAX_TRIALS" --precision 5 --settle 3 --drain 5 -q "${MAX_LATENCY[@]}" \
        --json "$dir/$name-findmax.json" >&2 || true
    stop_sut
    rate=$(json_get "$dir/$name-findmax.json" max_clean_rate 2>/dev/null || true)
    if [ -z "$rate" ]; then
        log "$name: no clean call rate found; no fixed-rate runs"
        return 0
    fi
    local pct r
    for pct in 50 90; do
        r=$(python3 -c "print(max(1, int($rate * $pct / 100)))")
        log "   $name at $pct % of $rate = $r calls/s for ${RUN_SECONDS}s"
        rm -rf "$dir/$name-$pct"
        # A fresh proxy: the generator's new ports would otherwise meet the bindings the
        # search left (a registrar that keeps several contacts per AOR may pick the old one).
        start_sut "$name" "$port" "$dir/$name-$pct.log" "${bufs[@]}"
        c0=$(bench_cpu_ticks "$SUT_PID")
        t0=$(date +%s.%N)
        taskset -c "$GEN_CPU" "$LOAD" call --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
            --threads 1 --users 100 --rate "$r" --duration "$RUN_SECONDS" --drain 10 -q \
            --json "$dir/$name-$pct.json" --hgrm "$dir/$name-$pct" \
            --csv "$dir/$name-$pct.csv" >"$dir/$name-$pct.txt" 2>&1 || true
        t1=$(date +%s.%N)
        c1=$(bench_cpu_ticks "$SUT_PID")
        python3 - "$dir/$name-$pct.cpu.json" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" \
            "$dir/$name-$pct.json" <<'EOF'
import json, sys
out, c0, c1, t0, t1, hz, run = sys.argv[1:8]
cpu_s = (int(c1) - int(c0)) / int(hz)
calls = json.load(open(run)).get("succeeded", 0)
json.dump({"sut_cpu_s": cpu_s, "wall_s": float(t1) - float(t0),
           "cpu_us_per_call": round(cpu_s / calls * 1e6, 2) if calls else None},
          open(out, "w"), indent=2)
EOF
        stop_sut
    done
}

section_calls() {
    log "== calls: find-max call, then 50 % and 90 % of the clean rate ($CALL_SYSTEMS)"
    mkdir -p "$OUT_DIR/calls"
    local s
    for s in $CALL_SYSTEMS; do calls_one "$s"; done
}

section_register() {
    log "== register: challenged REGISTER, sipshard vs Kamailio"
    local dir="$OUT_DIR/register" port n=2000 s
    rm -rf "$dir" "$OUT_DIR/register-auth.json"
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do echo "u$i:$PASSWORD"; done >"$WORK/users"
    echo "*:$PASSWORD" >"$WORK/passwords"
    for s in sipshard kamailio-auth; do
        port=$(bench_free_port)
        if [ "$s" = sipshard ]; then
            start_sut sipshard "$port" "$dir/$s.log" --domain "$DOMAIN" --users "$WORK/users" \
                --auth register --rcvbuf 8388608 --sndbuf 8388608
        else
            start_sut kamailio-auth "$port" "$dir/$s.log"
        fi
        log "-- find-max register: $s"
        taskset -c "$GEN_CPU" "$LOAD" find-max register --target "127.0.0.1:$port" \
            --cpus "$GEN_CPU" --threads 1 --domain "$DOMAIN" --users "$n" --user-prefix u \
            --password-file "$WORK/passwords" --rate 2000 --max-rate 128000 \
            --duration "$REG_TRIAL" --max-trials "$MAX_TRIALS" --precision 5 --settle 3 \
            --drain 5 -q "${MAX_LATENCY[@]}" --json "$dir/${s%-auth}-findmax.json" >&2 || true
        stop_sut
    done
    log "-- closed-loop challenged registrations (scripts/bench-register-auth.sh)"
    env "${AUTH_ENV[@]}" SUT_CPU="$SUT_CPU" DRIVER_CPU="$GEN_CPU" OUT="$OUT_DIR/register-auth.json" \
        scripts/bench-register-auth.sh >/dev/null
}

section_generators() {
    log "== generators: sipshard-load vs SIPp (scripts/bench-loadgen.sh)"
    rm -rf "$OUT_DIR/generators"
    scripts/bench-loadgen.sh --sipshard "$SIPSHARD" --out "$OUT_DIR/generators" \
        --proxy-cpu "$SUT_CPU" --gen-cpu "$GEN_CPU" --settle 3 "${GEN_ARGS[@]}" >&2
}

section_memory() {
    log "== memory: $MEMORY_AORS AORs registered through sipshard-load, 1 and 2 shards"
    local dir="$OUT_DIR/memory" shards name port before after dur
    rm -rf "$dir"
    mkdir -p "$dir"
    dur=$(python3 -c "import math; print(math.ceil($MEMORY_AORS / $MEMORY_RATE))")
    for shards in 1 2; do
        name=sipshard
        [ "$shards" = 2 ] && name=sipshard-2shards
        port=$(bench_free_port)
        start_sut "$name" "$port" "$dir/$name.log" --domain "$DOMAIN" --max-bindings 20000000 \
            --rcvbuf 8388608
        sleep 1
        before=$(vmrss_kib "$SUT_PID")
        # Exactly one REGISTER per AOR: rate x duration = AORs.
        taskset -c "$GEN_CPU" "$LOAD" register --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
            --threads 1 --domain "$DOMAIN" --users "$MEMORY_AORS" \
            --rate "$(python3 -c "print($MEMORY_AORS / $dur)")" --duration "$dur" \
            --drain 10 -q --json "$dir/$name-register.json" >"$dir/$name-register.txt" 2>&1 || true
        sleep 2 # replication between shards settles
        after=$(vmrss_kib "$SUT_PID")
        python3 - "$dir/$name.json" "$shards" "$before" "$after" "$dir/$name-register.json" \
            "$MEMORY_AORS" <<'EOF'
import json, sys
out, shards, before, after, reg, users = sys.argv[1:7]
shards, before, after = int(shards), int(before) * 1024, int(after) * 1024
r = json.load(open(reg))
# One REGISTER per AOR was scheduled; a user registered twice would not add an AOR.
aors = min(r.get("succeeded") or 0, int(users))
json.dump({
    "shards": shards, "aors_registered": aors, "register_failed": r.get("failed"),
    "register_rate": r.get("achieved_rate"),
    "rss_before_bytes": before, "rss_after_bytes": after,
    "rss_bytes_per_aor": round((after - before) / aors, 1) if aors else None,
    "rss_bytes_per_aor_per_shard": round((after - before) / aors / shards, 1) if aors else None,
}, open(out, "w"), indent=2)
EOF
        stop_sut
    done
    log "-- location table alone (cargo bench --bench location_memory -- $MEMORY_AORS)"
    cargo bench --quiet --bench location_memory -- "$MEMORY_AORS" >"$dir/location_memory.txt" 2>&1
    grep '"kind":"location_memory"' "$dir/location_memory.txt" | tail -1 >"$dir/location_memory.json" || true
}

# Not among the default sections: nodes sharing their location table through Redis.
section_cluster() {
    log "== cluster: nodes on one Redis (scripts/bench-cluster.sh)"
    local args=()
    [ "$QUICK" = 1 ] && args+=(--quick)
    [ "$INSTALL" = 1 ] || args+=(--no-install)
    env SUT_CPU="$SUT_CPU" GEN_CPU="$GEN_CPU" OUT_DIR="$OUT_DIR" AORS="$MEMORY_AORS" \
        MAX_LATENCY_MS="$MAX_LATENCY_MS" scripts/bench-cluster.sh "${args[@]}"
}

# ---------------------------------------------------------------------------------------

start=$(date +%s)
log "mode $MODE, sections: ${SECTIONS[*]}; SUT on CPU $SUT_CPU, generator on CPU $GEN_CPU, $ncpu CPUs"
if ((ncpu <= 2)); then
    log "note: $ncpu CPUs: the 2-shard rows share CPU $GEN_CPU with the generator"
fi
for s in "${SECTIONS[@]}"; do
    "section_$s"
    mark_section "$s"
done
log "sections done in $(($(date +%s) - start)) s"

summary_args=("$OUT_DIR")
if [ "$DOCS" = 1 ]; then
    summary_args+=(--markdown docs/benchmarks-results.md --readme README.md)
fi
if [ "$DOCS" = 1 ] && [[ " ${SECTIONS[*]} " == *" tcp "* ]]; then
    summary_args+=(--tcp-markdown docs/benchmarks-tcp.md --tcp-readme README.md)
fi
if [ "$DOCS" = 1 ] && [[ " ${SECTIONS[*]} " == *" tls "* ]]; then
    summary_args+=(--tls-markdown docs/benchmarks-tls.md --tls-readme README.md)
fi
python3 scripts/bench-summary.py "${summary_args[@]}"
if [ "$DOCS" = 1 ]; then
    if PLOT_PY=$(plot_python); then
        "$PLOT_PY" scripts/plot.py "$OUT_DIR" docs/img
    else
        log "matplotlib missing: plots not regenerated"
    fi
fi
if [ "$DOCS" = 1 ]; then
    log "done in $(($(date +%s) - start)) s: $OUT_DIR/summary.json, docs/benchmarks-results.md, README.md, docs/img/"
else
    log "done in $(($(date +%s) - start)) s: $OUT_DIR/summary.json"
fi
