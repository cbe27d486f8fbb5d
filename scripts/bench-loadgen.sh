#!/usr/bin/env bash
# Benchmark the load generators themselves, and sipshard through them.
#
#   scripts/bench-loadgen.sh [--sipshard PATH] [--kamailio] [--proxies-only]
#                            [--duration S] [--out DIR]
#                            [--proxy-cpu N] [--gen-cpu N] [--sipp-rates "R1 R2 ..."]
#                            [--load-start R] [--load-max R] [--cost-rate R]
#                            [--max-latency-ms MS] [--settle S]
#
# What it measures (all on 127.0.0.1, every run bounded in time):
#
#   0. CPU time per call of each generator (UAC and UAS side) at a fixed rate: on a shared,
#      noisy machine this is the steadiest comparison.
#   1. SIPp alone: `sipp -sn uac` -> `sipp -sn uas`, both pinned to the generator CPU, at
#      increasing rates; the highest rate whose run had no failed call and kept its rate.
#   2. sipshard-load alone: `sipshard-load find-max call` with the target pointing at its own
#      answering side (UAC and UAS in one process, one thread, pinned to the generator CPU):
#      the generator's own ceiling on one core.
#   (--proxies-only skips 0-2.)
#   3. With --sipshard PATH (a binary that accepts --listen): sipshard pinned to the proxy CPU
#      (one shard), driven first by sipshard-load (find-max, UAC+UAS on the generator CPU), then
#      by SIPp's uac + uas on the generator CPU, at increasing rates. With --kamailio, the same
#      with Kamailio (scripts/kamailio-loadgen.cfg, one worker) as the proxy.
#
# Clean means zero failed calls over the whole trial (RFC 7502) and the schedule kept; with
# --max-latency-ms, sipshard-load's searches also require INVITE->200 p99 under MS (SIPp has no
# such check: for it, clean stays "exit 0 and over within 1.15 x the schedule + 2 s"). Against
# a proxy the generator's lag p99 must stay under 20 ms (else the trial says nothing about the
# proxy); against itself (2.) under 250 ms, since there its lag is what is measured.
#
# The issue's targets: sipshard-load on one core sustains >= 10x SIPp's clean rate, and
# >= 4000 calls/s with zero failures through a one-shard sipshard.
#
# Results go to DIR (default bench-results/loadgen-<date>): one JSON per search, SIPp logs,
# summary.txt and loadgen.json (every figure of the summary).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

SIPSHARD=""
KAMAILIO=0
ALONE=1
DURATION=5
OUT=""
PROXY_CPU=0
GEN_CPU=1
SIPP_RATES="250 500 750 1000 1500 2000 2500 3000 3500 4000 4500 5000 6000 8000"
LOAD_START=1000
COST_RATE=1000
MAX_LAT=()
SETTLE=32
LOAD_MAX=64000
while [ $# -gt 0 ]; do
    case "$1" in
        --sipshard) SIPSHARD="$2"; shift 2 ;;
        --kamailio) KAMAILIO=1; shift ;;
        --proxies-only) ALONE=0; shift ;;
        --duration) DURATION="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --proxy-cpu) PROXY_CPU="$2"; shift 2 ;;
        --gen-cpu) GEN_CPU="$2"; shift 2 ;;
        --sipp-rates) SIPP_RATES="$2"; shift 2 ;;
        --load-start) LOAD_START="$2"; shift 2 ;;
        --load-max) LOAD_MAX="$2"; shift 2 ;;
        --cost-rate) COST_RATE="$2"; shift 2 ;;
        --max-latency-ms) MAX_LAT=(--max-latency-ms "$2"); shift 2 ;;
        --settle) SETTLE="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

for tool in sipp taskset python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install -y sip-tester util-linux python3)" >&2; exit 2; }
done

OUT="${OUT:-bench-results/loadgen-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

cargo build --release -p sipshard-loadtest >&2
LOAD="$PWD/target/release/sipshard-load"

PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

# A UDP port nobody uses (a block of $1 consecutive ports).
free_port() {
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(500):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", base + i))
            socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
EOF
}

json_field() { python3 -c "import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print('' if v is None else int(v))" "$1" "$2"; }

# One SIPp trial: uac at RATE for DURATION seconds towards DEST (requests to user SERVICE).
# Clean when sipp exits 0 (every call succeeded) and the calls took no longer than the
# schedule plus a little (SIPp silently slows down when it cannot keep the rate).
sipp_trial() {
    local rate=$1 dest=$2 tag=$3
    local calls=$((rate * DURATION))
    local port; port=$(free_port 1)
    local log="$OUT/sipp-$tag-$rate"
    local start end rc=0
    start=$(date +%s.%N)
    taskset -c "$GEN_CPU" timeout $((DURATION * 3 + 40)) sipp -sn uac "$dest" -s service \
        -i 127.0.0.1 -p "$port" -r "$rate" -m "$calls" -l $((rate * 4 + 100)) \
        -nostdin -timeout $((DURATION * 3 + 30))s -trace_err -error_file "$log.err" \
        >"$log.out" 2>&1 || rc=$?
    end=$(date +%s.%N)
    local took; took=$(python3 -c "print(round($end - $start, 2))")
    local held; held=$(python3 -c "print(1 if $took <= $DURATION * 1.15 + 2 else 0)")
    if [ "$rc" = 0 ] && [ "$held" = 1 ]; then
        say "  sipp $tag rate $rate: clean ($calls calls in ${took}s)"
        return 0
    fi
    say "  sipp $tag rate $rate: NOT clean (exit $rc, $calls calls took ${took}s, schedule ${DURATION}s)"
    return 1
}

# Highest clean SIPp rate against a uas reachable at DEST. Prints the rate (0 if none).
sipp_ladder() {
    local dest=$1 tag=$2 best=0
    for r in $SIPP_RATES; do
        if sipp_trial "$r" "$dest" "$tag"; then best=$r; else break; fi
        sleep 2
    done
    echo "$best" > "$OUT/sipp-$tag.best"
}

start_sipp_uas() {
    local port=$1 tag=$2
    taskset -c "$GEN_CPU" sipp -sn uas -i 127.0.0.1 -p "$port" -nostdin \
        -timeout 3600s >"$OUT/sipp-uas-$tag.out" 2>&1 &
    PIDS+=($!)
    sleep 0.5
}

say "== sipshard-load benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, trial ${DURATION}s"
say "   generator CPU $GEN_CPU, proxy CPU $PROXY_CPU"

SIPP_DIRECT=""
LOAD_SELF=""
SIPP_US=""
LOAD_US=""
if [ "$ALONE" = 1 ]; then
# ---- 0. CPU cost per call at a fixed rate --------------------------------------------------
# Highest clean rates swing with whatever else the machine runs; CPU time per call does not
# (much). Both generators place COST_RATE calls/s for DURATION seconds on GEN_CPU, UAC and UAS.
say ""
say "-- 0. CPU time per call at $COST_RATE calls/s (user+sys of every generator process)"
cpu_of() { awk '{ printf "%.3f", $1 + $2 }' "$1"; }
COST_CALLS=$((COST_RATE * DURATION))
UAS_PORT=$(free_port 1)
/usr/bin/time -o "$OUT/cost-sipp-uas.time" -f "%U %S" taskset -c "$GEN_CPU" sipp -sn uas \
    -i 127.0.0.1 -p "$UAS_PORT" -m "$COST_CALLS" -nostdin -timeout $((DURATION * 3 + 30))s \
    >"$OUT/cost-sipp-uas.out" 2>&1 &
COST_UAS=$!
sleep 0.5
rc=0
/usr/bin/time -o "$OUT/cost-sipp-uac.time" -f "%U %S" taskset -c "$GEN_CPU" sipp -sn uac \
    "127.0.0.1:$UAS_PORT" -i 127.0.0.1 -p "$(free_port 1)" -r "$COST_RATE" -m "$COST_CALLS" \
    -nostdin -timeout $((DURATION * 3 + 30))s >"$OUT/cost-sipp-uac.out" 2>&1 || rc=$?
wait "$COST_UAS" || true
SIPP_CPU=$(python3 -c "print($(cpu_of "$OUT/cost-sipp-uas.time") + $(cpu_of "$OUT/cost-sipp-uac.time"))")
SIPP_US=$(python3 -c "print(round($SIPP_CPU / $COST_CALLS * 1e6, 1))")
say "   SIPp uac+uas:        ${SIPP_CPU}s CPU for $COST_CALLS calls = $SIPP_US us/call (sipp exit $rc)"
SELF_PORT=$(free_port 1)
rc=0
/usr/bin/time -o "$OUT/cost-load.time" -f "%U %S" taskset -c "$GEN_CPU" "$LOAD" call \
    --target "127.0.0.1:$SELF_PORT" --local-port "$SELF_PORT" --ports 1 --users 100 \
    --rate "$COST_RATE" --duration "$DURATION" -q >"$OUT/cost-load.out" 2>&1 || rc=$?
LOAD_CPU=$(cpu_of "$OUT/cost-load.time")
LOAD_US=$(python3 -c "print(round($LOAD_CPU / $COST_CALLS * 1e6, 1))")
say "   sipshard-load UAC+UAS: ${LOAD_CPU}s CPU for $COST_CALLS calls = $LOAD_US us/call (exit $rc)"
say "   => per call, SIPp costs $(python3 -c "print(round($SIPP_US / $LOAD_US, 1))")x the CPU of sipshard-load"

# ---- 1. SIPp alone --------------------------------------------------------------------------
say ""
say "-- 1. SIPp uac -> SIPp uas (no proxy), both on CPU $GEN_CPU"
UAS_PORT=$(free_port 1)
start_sipp_uas "$UAS_PORT" direct
UAS_PID=${PIDS[-1]}
sipp_ladder "127.0.0.1:$UAS_PORT" direct
kill "$UAS_PID" 2>/dev/null || true
SIPP_DIRECT=$(cat "$OUT/sipp-direct.best")
say "   SIPp highest clean rate: $SIPP_DIRECT calls/s"

# ---- 2. sipshard-load alone -----------------------------------------------------------------
say ""
say "-- 2. sipshard-load call against itself (UAC+UAS, 1 thread) on CPU $GEN_CPU"
SELF_PORT=$(free_port 1)
# Here the generator is its own target, so its lag is part of what is measured, not a reason to
# distrust the trial: a trial is clean with no failed call, its send and receive lag p99 under
# 250 ms (half of T1), none of its datagrams dropped, the schedule over on time and, with
# --max-latency-ms, INVITE->200 p99 (counted from the scheduled
# time, so lag included) under that. SIPp's trials are held to less: exit 0 and the run over
# within 1.15 x the schedule + 2 s.
taskset -c "$GEN_CPU" "$LOAD" find-max call --target "127.0.0.1:$SELF_PORT" \
    --local-port "$SELF_PORT" --ports 1 --users 100 --threads 1 \
    --rate "$LOAD_START" --max-rate "$LOAD_MAX" --duration "$DURATION" --precision 5 -q \
    --settle 2 --max-lag-ms 250 "${MAX_LAT[@]}" --json "$OUT/load-self.json" 2>&1 |
    tee -a "$SUMMARY" || true
LOAD_SELF=$(json_field "$OUT/load-self.json" max_clean_rate)
say "   sipshard-load highest clean rate (own ceiling): ${LOAD_SELF:-none} calls/s"
fi

# ---- 3. through a proxy ---------------------------------------------------------------------
# through_proxy NAME: the proxy (command in PROXY_CMD, listening on PROXY_PORT) on PROXY_CPU,
# driven by sipshard-load and then by SIPp's uac + uas on GEN_CPU. Sets LOAD_<NAME>/SIPP_<NAME>.
PROXY_PID=""
start_proxy() {
    # Own session and process group: a proxy that signals its group on exit (Kamailio) must
    # not hit this script or the generator.
    setsid taskset -c "$PROXY_CPU" "${PROXY_CMD[@]}" >"$OUT/$1.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    sleep 1.5
}
stop_proxy() {
    # SIGTERM: a forking proxy (Kamailio) stops its workers too.
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    sleep 1
}
through_proxy() {
    local name=$1
    say ""
    say "-- 3. $name (${PROXY_CMD[*]}) on CPU $PROXY_CPU"
    say "   3a. driven by sipshard-load (UAC+UAS, 1 thread) on CPU $GEN_CPU"
    start_proxy "$name-load"
    taskset -c "$GEN_CPU" "$LOAD" find-max call --target "127.0.0.1:$PROXY_PORT" \
        --users 100 --threads 1 --rate "$LOAD_START" --max-rate "$LOAD_MAX" \
        --duration "$DURATION" --precision 5 -q --settle "$SETTLE" "${MAX_LAT[@]}" \
        --json "$OUT/load-$name.json" 2>&1 | tee -a "$SUMMARY" || true
    local load; load=$(json_field "$OUT/load-$name.json" max_clean_rate 2>/dev/null || true)
    say "   sipshard-load through $name: ${load:-none} calls/s"
    stop_proxy

    say "   3b. driven by SIPp uac + uas on CPU $GEN_CPU"
    start_proxy "$name-sipp"
    local uas_port; uas_port=$(free_port 1)
    start_sipp_uas "$uas_port" "$name"
    local uas_pid=${PIDS[-1]}
    # SIPp's uas does not register: bind `service` to it through the proxy's registrar.
    bench_register service "$PROXY_PORT" "$uas_port" ||
        say "   (could not bind service to SIPp's uas through $name: its calls will fail)"
    sipp_ladder "127.0.0.1:$PROXY_PORT" "$name"
    kill "$uas_pid" 2>/dev/null || true
    stop_proxy
    local sipp; sipp=$(cat "$OUT/sipp-$name.best")
    say "   SIPp through $name: $sipp calls/s"
    echo "$load" > "$OUT/load-$name.best"
}

LOAD_PROXY=""
SIPP_PROXY=""
if [ -n "$SIPSHARD" ]; then
    if ! "$SIPSHARD" --help 2>&1 | grep -q -- '--listen'; then
        say ""
        say "-- 3. sipshard skipped: $SIPSHARD does not accept --listen yet"
    else
        PROXY_PORT=$(free_port 1)
        PROXY_CMD=("$SIPSHARD" --listen "127.0.0.1:$PROXY_PORT")
        if "$SIPSHARD" --help 2>&1 | grep -q -- '--shards'; then PROXY_CMD+=(--shards 1); fi
        if "$SIPSHARD" --help 2>&1 | grep -q -- '--cpus'; then PROXY_CMD+=(--cpus "$PROXY_CPU"); fi
        through_proxy sipshard
        LOAD_PROXY=$(cat "$OUT/load-sipshard.best")
        SIPP_PROXY=$(cat "$OUT/sipp-sipshard.best")
    fi
fi
if [ "$KAMAILIO" = 1 ]; then
    PROXY_PORT=$(free_port 1)
    # 1 GiB of shared memory: an overloaded tm keeps many transactions.
    PROXY_CMD=(kamailio -f "$PWD/scripts/kamailio-loadgen.cfg" -DD -E -m 1024 -w "$OUT"
        -P "$OUT/kamailio.pid" -A "LISTEN=udp:127.0.0.1:$PROXY_PORT" -A "CHILDREN=1")
    through_proxy kamailio
fi

# ---- verdict --------------------------------------------------------------------------------
say ""
say "== summary (highest rate with zero failed calls, ${DURATION}s trials)"
if [ "$ALONE" = 1 ]; then
    say "   SIPp uac+uas, no proxy, 1 core:              $SIPP_DIRECT calls/s"
    say "   sipshard-load UAC+UAS, no proxy, 1 core:     ${LOAD_SELF:-none} calls/s"
fi
if [ -n "$SIPSHARD" ]; then
    say "   sipshard (1 shard) driven by sipshard-load:  ${LOAD_PROXY:-n/a} calls/s"
    say "   sipshard (1 shard) driven by SIPp:           ${SIPP_PROXY:-n/a} calls/s"
fi
if [ "$KAMAILIO" = 1 ]; then
    say "   Kamailio (1 worker) driven by sipshard-load:  $(cat "$OUT/load-kamailio.best") calls/s"
    say "   Kamailio (1 worker) driven by SIPp:           $(cat "$OUT/sipp-kamailio.best") calls/s"
fi
python3 - "${SIPP_DIRECT:-0}" "${LOAD_SELF:-0}" "${LOAD_PROXY:-}" "${SIPP_PROXY:-}" <<'EOF' | tee -a "$SUMMARY"
import sys
sipp, load = float(sys.argv[1] or 0), float(sys.argv[2] or 0)
lp = float(sys.argv[3]) if sys.argv[3] else None
sp = float(sys.argv[4]) if sys.argv[4] else None
# The target is about the generators: each one's own ceiling on one core, no proxy between.
# Through a 1-shard sipshard the generator can show no more than sipshard forwards, so that
# ratio is bounded by the proxy, not by the generator.
if sipp > 0 and load > 0:
    print(f"   sipshard-load / SIPp, each alone on one core: {load / sipp:.1f}x (target >= 10x)")
if sp and lp:
    print(f"   sipshard-load / SIPp through sipshard: {lp / sp:.1f}x (bounded by what one shard forwards)")
if lp is not None:
    print(f"   through sipshard: {'OK' if lp >= 4000 else 'BELOW'} the 4000 calls/s target")
EOF
KAM_LOAD=""
KAM_SIPP=""
if [ "$KAMAILIO" = 1 ]; then
    KAM_LOAD=$(cat "$OUT/load-kamailio.best")
    KAM_SIPP=$(cat "$OUT/sipp-kamailio.best")
fi
python3 - "$OUT/loadgen.json" "$DURATION" "$COST_RATE" "$GEN_CPU" "$PROXY_CPU" "$SIPP_US" "$LOAD_US" \
    "$SIPP_DIRECT" "$LOAD_SELF" "$LOAD_PROXY" "$SIPP_PROXY" "$KAM_LOAD" "$KAM_SIPP" <<'EOF'
import json, sys
def num(v):
    return float(v) if v not in ("", None) else None
out, duration, cost_rate, gen_cpu, proxy_cpu = sys.argv[1:6]
keys = ["sipp_us_per_call", "load_us_per_call", "sipp_direct_max_clean", "load_self_max_clean",
        "load_through_sipshard_max_clean", "sipp_through_sipshard_max_clean",
        "load_through_kamailio_max_clean", "sipp_through_kamailio_max_clean"]
doc = {"trial_duration_s": float(duration), "cost_rate": float(cost_rate),
       "generator_cpu": int(gen_cpu), "proxy_cpu": int(proxy_cpu)}
doc.update({k: num(v) for k, v in zip(keys, sys.argv[6:14])})
a, b = doc["load_through_sipshard_max_clean"], doc["sipp_through_sipshard_max_clean"]
doc["ratio_load_over_sipp_through_sipshard"] = round(a / b, 2) if a and b else None
a, b = doc["sipp_us_per_call"], doc["load_us_per_call"]
doc["ratio_sipp_over_load_cpu_per_call"] = round(a / b, 2) if a and b else None
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
say "   results in $OUT"
