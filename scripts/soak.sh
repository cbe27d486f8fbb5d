#!/usr/bin/env bash
# Soak test (not in CI): one hour of calls through one sipshard shard at 70 % of its measured
# saturation, with registration churn and a trickle of malformed requests, then pass or fail.
#
#   scripts/soak.sh                               # the real run: about 65 minutes
#   DURATION=120 WARMUP=30 scripts/soak.sh        # a short run that checks the plumbing
#   scripts/soak.sh --report bench-results/soak   # the verdict of a finished run, again
#
# What runs (every process pinned; traffic only to 127.0.0.1):
#
#   CPU 0  sipshard --shards 1 --cpus 0 --domain soak.example.com, 4 MiB socket buffers (as the
#          calls section of scripts/bench.sh), Prometheus metrics on a loopback port.
#   CPU 1  sipshard-load call: UAC and UAS in one process (100 UAS users registered through the
#          proxy first), RFC 3665 section 3.1 calls at $RATE per second for $DURATION s.
#   CPU 1  sipshard-load register, twice (registration churn, about 220 REGISTER/s in all):
#            refresh: 10,000 users, 200/s, Expires 60: each user re-registers every 50 s, 10 s
#                     before its binding would lapse, as a phone does at ~80 % of its expiry;
#                     10,000 bindings refreshed in place;
#            churn:   2,000 users, 20/s, Expires 60: each user comes back every 100 s, 40 s
#                     after its binding expired: 20 bindings added and 20 expired per second.
#          Together they drive every path of the location table that allocates or frees
#          (add, refresh, expiry, re-add) while the calls look it up; ~220/s is about 0.3 %
#          of what one shard registers (64,000 challenged REGISTERs/s in docs/benchmarks.md),
#          so it changes the table without taking capacity from the calls.
#   CPU 1  the malformed-request trickle, ~5/s: `robustness trickle --target IP:PORT --rate R
#          --duration S` ($ROBUSTNESS, the robustness example of the sipshard package); skipped
#          with a warning when that binary does not exist.
#   CPU 1  a sampler, every $SAMPLE_INTERVAL s: sipshard's VmRSS, its CPU time, and from its
#          /metrics the drops (by reason), parse errors (by kind) and bindings.
#
# $RATE, when not given: `sipshard-load find-max call` through a fresh 1-shard sipshard (trials
# of 5 s, at most 8; about a minute), 70 % of its highest clean rate. On a 2-CPU machine that
# rate is usually the generator's ceiling ("generator-limited"), not sipshard's: the soak then
# runs at 70 % of what the generator thread can place, and says so.
#
# Pass criteria (after the warm-up; each one printed with its figures):
#   1. zero failed calls (timeouts, error statuses, unexpected messages) over the whole run,
#      drain included; and zero failed REGISTERs in either churn generator;
#   2. resident memory flat: (max - min) / min of VmRSS <= 5 % ($RSS_TOLERANCE);
#   3. INVITE->200 p99 stable: the run after warm-up is cut into windows of $WINDOW s (300; a
#      short run gets at least 3 windows); a window's p99 is the median of its per-second p99s
#      (sipshard-load's --csv gives one p99 per second, each second the same number of calls;
#      the median second ignores a neighbour's one-second stall but moves with any drift);
#      every window's must be at most 2x ($P99_FACTOR) the first window's, and the first at
#      most 250 ms (the ceiling of the rate search: equally bad windows are not "stable").
# Exit status: 0 pass, 1 fail (or a process that could not start), 2 bad arguments.
#
# Options (environment, or flags of the same name: --duration 3600 --rate 20000 ...):
#   DURATION=3600        seconds of calls and churn (the schedule; in-flight calls then drain)
#   WARMUP=300           seconds at the start that the memory and p99 criteria ignore
#   RATE=                calls per second (empty: measure, then 70 %: see above)
#   RATE_FRACTION=0.70   the fraction of the measured saturation
#   REG_USERS=10000 REG_RATE=200 REG_EXPIRES=60            the refresh generator
#   CHURN_USERS=2000 CHURN_RATE=20 CHURN_EXPIRES=60        the churn generator (0 users: off)
#   TRICKLE_RATE=5       malformed requests per second (0: off)
#   ROBUSTNESS=target/release/examples/robustness          the trickle's binary
#   WINDOW=300 P99_FACTOR=2 RSS_TOLERANCE=0.05 SAMPLE_INTERVAL=10
#   OUT_DIR=bench-results/soak   every file of the run (below)
#   DOCS=auto            1: write the summary into docs/benchmarks-results.md (between its soak
#                        markers, which scripts/bench.sh keeps) and the plot to docs/img/soak.png;
#                        0: only OUT_DIR; auto: 1 for a run of 3600 s or more, else 0
#   SUT_CPU=0 GEN_CPU=1
#
# Output in $OUT_DIR: summary.md (the markdown snippet), soak.json (every figure), soak.png
# (VmRSS, INVITE->200 p99 and calls/s over time; needs matplotlib), samples.csv (the sampler),
# calls.csv / calls.json (sipshard-load's per-second rows and report), register-*.json,
# findmax.json, sipshard.log, and the output of every generator. Every process started here
# is stopped by its PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

REPORT_ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d'
        exit 0
        ;;
    --report)
        REPORT_ONLY=${2:?--report needs a directory}
        shift
        ;;
    --duration | --warmup | --rate | --rate-fraction | --reg-users | --reg-rate | --reg-expires | \
        --churn-users | --churn-rate | --churn-expires | --trickle-rate | --robustness | --window | \
        --p99-factor | --rss-tolerance | --sample-interval | --out-dir | --docs)
        var=$(echo "${1#--}" | tr 'a-z-' 'A-Z_')
        printf -v "$var" '%s' "${2:?$1 needs a value}"
        shift
        ;;
    *)
        echo "soak.sh: unknown argument $1 (--help)" >&2
        exit 2
        ;;
    esac
    shift
done

DURATION=${DURATION:-3600}
WARMUP=${WARMUP:-300}
RATE=${RATE:-}
RATE_FRACTION=${RATE_FRACTION:-0.70}
REG_USERS=${REG_USERS:-10000}
REG_RATE=${REG_RATE:-200}
REG_EXPIRES=${REG_EXPIRES:-60}
CHURN_USERS=${CHURN_USERS:-2000}
CHURN_RATE=${CHURN_RATE:-20}
CHURN_EXPIRES=${CHURN_EXPIRES:-60}
TRICKLE_RATE=${TRICKLE_RATE:-5}
ROBUSTNESS=${ROBUSTNESS:-$ROOT/target/release/examples/robustness}
WINDOW=${WINDOW:-300}
P99_FACTOR=${P99_FACTOR:-2}
RSS_TOLERANCE=${RSS_TOLERANCE:-0.05}
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-10}
OUT_DIR=${OUT_DIR:-$ROOT/bench-results/soak}
# Short runs stay out of the docs unless DOCS=1 says otherwise.
DOCS=${DOCS:-auto}
SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
DOMAIN=soak.example.com
# As the calls section of scripts/bench.sh (the kernel caps them at net.core.rmem_max).
SOCKBUF=4194304

log() { printf '[soak] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
is_num() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for v in DURATION WARMUP RATE_FRACTION REG_USERS REG_RATE REG_EXPIRES CHURN_USERS CHURN_RATE \
    CHURN_EXPIRES TRICKLE_RATE WINDOW P99_FACTOR RSS_TOLERANCE SAMPLE_INTERVAL; do
    is_num "${!v}" || {
        log "$v=${!v}: not a number"
        exit 2
    }
done
[ -z "$RATE" ] || is_num "$RATE" || {
    log "RATE=$RATE: not a number"
    exit 2
}
python3 -c "import sys; sys.exit(0 if $WARMUP < $DURATION else 1)" || {
    log "WARMUP ($WARMUP s) must be shorter than DURATION ($DURATION s)"
    exit 2
}
# The location table fills for one cycle of each REGISTER generator (users / rate seconds: the
# refresh generator's first round adds its users, the churn's first expiries come after that);
# the memory criterion is only about a leak once the warm-up covers it.
fill=$(python3 -c "print(int(max([u / r for u, r in (($REG_USERS, $REG_RATE), ($CHURN_USERS, $CHURN_RATE)) if u > 0 and r > 0] or [0])) + 10)")
if python3 -c "import sys; sys.exit(0 if $WARMUP < $fill else 1)"; then
    log "warning: WARMUP=$WARMUP s is shorter than the location table's fill (~$fill s): the memory criterion will see the table grow"
fi


# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

# Verdict, summary.md, soak.json and soak.png of the run in $1; exit status 0 pass, 1 fail.
report() {
    local dir=$1 py=python3 docs=()
    if plot_python >/dev/null; then
        py=$(plot_python)
    else
        log "matplotlib missing (apt-get install python3-matplotlib): no plot"
    fi
    local docs_on=$DOCS
    if [ "$docs_on" = auto ]; then
        docs_on=$(python3 -c 'import json, sys
print(1 if json.load(open(sys.argv[1]))["duration_s"] >= 3600 else 0)' "$dir/meta.json" 2>/dev/null || echo 0)
    fi
    if [ "$docs_on" = 1 ]; then docs=(--markdown docs/benchmarks-results.md --img docs/img/soak.png); fi
    "$py" scripts/soak-report.py "$dir" "${docs[@]}"
}

if [ -n "$REPORT_ONLY" ]; then
    report "$REPORT_ONLY"
    exit $?
fi

# ---------------------------------------------------------------------------------------
# Processes: every one started here is tracked by PID and stopped on exit.

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then bench_stop_pid "$p"; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    PIDS=("${keep[@]:-}")
}

for tool in cargo python3 taskset; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
ncpu=$(nproc --all)
((SUT_CPU < ncpu && GEN_CPU < ncpu)) || die "CPUs $SUT_CPU and $GEN_CPU needed, $ncpu present"

log "building (release): sipshard, sipshard-load"
cargo build --release --quiet --bin sipshard
cargo build --release --quiet -p sipshard-loadtest --bin sipshard-load
# The trickle's example, once it is part of the package.
if grep -q '^name = "robustness"' Cargo.toml || [ -f examples/robustness.rs ]; then
    cargo build --release --quiet --example robustness || log "warning: the robustness example does not build"
fi
SIPSHARD="$ROOT/target/release/sipshard"
LOAD="$ROOT/target/release/sipshard-load"

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

free_tcp_port() {
    python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_sipshard PORT LOG [extra flags...]: sets SUT_PID.
start_sipshard() {
    local port=$1 logf=$2
    shift 2
    taskset -c "$SUT_CPU" "$SIPSHARD" --listen "127.0.0.1:$port" --shards 1 --cpus "$SUT_CPU" \
        --domain "$DOMAIN" --rcvbuf "$SOCKBUF" --sndbuf "$SOCKBUF" --log-level error "$@" \
        >"$logf" 2>&1 &
    SUT_PID=$!
    PIDS+=("$SUT_PID")
    bench_wait_sip "$port" || {
        cat "$logf" >&2
        die "sipshard does not answer on port $port"
    }
}

stop_sipshard() {
    bench_stop_pid "$SUT_PID"
    forget_pid "$SUT_PID"
    sleep 1
}

json_get() { python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# 1. The rate: 70 % of the measured saturation, unless given.

SATURATION=
GEN_LIMITED=
if [ -z "$RATE" ]; then
    port=$(bench_free_port)
    log "measuring saturation: find-max call through sipshard (1 shard) on 127.0.0.1:$port"
    start_sipshard "$port" "$OUT_DIR/findmax-sipshard.log"
    taskset -c "$GEN_CPU" "$LOAD" find-max call --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
        --threads 1 --users 100 --domain "$DOMAIN" --rate 2000 --max-rate 64000 --duration 5 \
        --max-trials 8 --precision 5 --settle 3 --drain 5 --max-latency-ms 250 -q \
        --json "$OUT_DIR/findmax.json" >"$OUT_DIR/findmax.txt" 2>&1 || true
    stop_sipshard
    SATURATION=$(json_get "$OUT_DIR/findmax.json" max_clean_rate 2>/dev/null || true)
    GEN_LIMITED=$(json_get "$OUT_DIR/findmax.json" generator_limited 2>/dev/null || true)
    [ -n "$SATURATION" ] || {
        cat "$OUT_DIR/findmax.txt" >&2
        die "find-max found no clean call rate"
    }
    RATE=$(python3 -c "print(max(1, int($SATURATION * $RATE_FRACTION)))")
    limited=""
    [ "$GEN_LIMITED" = True ] && limited=" (generator-limited: the generator's ceiling, not sipshard's)"
    log "highest clean rate $SATURATION calls/s$limited; soak at $RATE_FRACTION of it: $RATE calls/s"
else
    log "rate given: $RATE calls/s (no saturation search)"
fi

# ---------------------------------------------------------------------------------------
# 2. The soak.

port=$(bench_free_port)
mport=$(free_tcp_port)
# The UAS users register once, before the calls, and never refresh: their bindings must
# outlive the whole schedule and its drain.
uas_expires=$(python3 -c "import math; print(max(3600, math.ceil($DURATION) + 600))")
log "sipshard on 127.0.0.1:$port (metrics 127.0.0.1:$mport), CPU $SUT_CPU"
start_sipshard "$port" "$OUT_DIR/sipshard.log" --metrics "127.0.0.1:$mport" \
    --max-expires "$((uas_expires > 7200 ? uas_expires : 7200))"

T0=$(date +%s.%N)
python3 - "$OUT_DIR/meta.json" <<EOF
import json, sys
json.dump({
    "t0": $T0, "duration_s": $DURATION, "warmup_s": $WARMUP, "rate": $RATE,
    "saturation": ${SATURATION:-None}, "rate_fraction": $RATE_FRACTION if "$SATURATION" else None,
    "generator_limited": True if "$GEN_LIMITED" == "True" else (False if "$GEN_LIMITED" else None),
    "reg": {"users": $REG_USERS, "rate": $REG_RATE, "expires": $REG_EXPIRES},
    "churn": {"users": $CHURN_USERS, "rate": $CHURN_RATE, "expires": $CHURN_EXPIRES},
    "trickle_rate": $TRICKLE_RATE, "window_s": $WINDOW, "p99_factor": $P99_FACTOR,
    "rss_tolerance": $RSS_TOLERANCE, "sample_interval_s": $SAMPLE_INTERVAL,
    "revision": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "dirty": $([ -n "$(git status --porcelain 2>/dev/null)" ] && echo True || echo False),
    "started": "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)",
    "cpus": $ncpu, "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/"//g')",
    "kernel": "$(uname -r)", "loadavg_before": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=2)
EOF

# The sampler: one row every SAMPLE_INTERVAL s until killed.
taskset -c "$GEN_CPU" python3 - "$SUT_PID" "$mport" "$SAMPLE_INTERVAL" "$T0" \
    "$OUT_DIR/samples.csv" <<'EOF' &
import csv, os, re, sys, time, urllib.request
pid, mport, interval, t0, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
hz = os.sysconf("SC_CLK_TCK")
series = re.compile(r'^(sipshard_[a-z_]+)\{([^}]*)\} (\S+)$')

def scrape():
    """Node totals (shard="total") of the families the soak watches; {} when unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    m = {}
    for line in text.splitlines():
        g = series.match(line)
        if not g or 'shard="total"' not in g.group(2):
            continue
        labels = dict(kv.split("=", 1) for kv in g.group(2).split(","))
        key = labels.get("reason") or labels.get("kind") or labels.get("event") or ""
        m.setdefault(g.group(1), {})[key.strip('"')] = float(g.group(3))
    return m

def fmt(d):
    return ";".join(f"{k}={int(v)}" for k, v in sorted(d.items()) if v)

with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["t_s", "rss_kib", "cpu_s", "bindings", "drops", "parse_errors", "drops_by_reason",
                "parse_errors_by_kind", "registrations"])
    nxt = time.time()
    while True:
        try:
            rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(st[11]) + int(st[12])) / hz
        except (OSError, StopIteration):
            break
        m = scrape()
        drops, parse = m.get("sipshard_drops_total", {}), m.get("sipshard_parse_errors_total", {})
        w.writerow([round(time.time() - t0, 1), rss, round(cpu, 2),
                    int(m.get("sipshard_bindings", {}).get("", 0)), int(sum(drops.values())),
                    int(sum(parse.values())), fmt(drops), fmt(parse),
                    fmt(m.get("sipshard_registrations_total", {}))])
        f.flush()
        nxt += interval
        time.sleep(max(0.0, nxt - time.time()))
EOF
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

# register_gen NAME USERS RATE EXPIRES: one REGISTER generator; sets GEN_PID.
register_gen() {
    taskset -c "$GEN_CPU" "$LOAD" register --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
        --threads 1 --ports 4 --domain "$DOMAIN" --users "$2" --user-prefix "$1" --expires "$4" \
        --rate "$3" --duration "$DURATION" --drain 10 -q --json "$OUT_DIR/register-$1.json" \
        >"$OUT_DIR/register-$1.txt" 2>&1 &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
}
log "registrations: refresh ${REG_USERS} users at $REG_RATE/s (Expires $REG_EXPIRES), churn $CHURN_USERS users at $CHURN_RATE/s (Expires $CHURN_EXPIRES)"
WAIT_PIDS=()
REG_PID=
CHURN_PID=
if python3 -c "import sys; sys.exit(0 if $REG_USERS > 0 and $REG_RATE > 0 else 1)"; then
    register_gen refresh "$REG_USERS" "$REG_RATE" "$REG_EXPIRES"
    REG_PID=$GEN_PID
    WAIT_PIDS+=("$REG_PID")
fi
if python3 -c "import sys; sys.exit(0 if $CHURN_USERS > 0 and $CHURN_RATE > 0 else 1)"; then
    register_gen churn "$CHURN_USERS" "$CHURN_RATE" "$CHURN_EXPIRES"
    CHURN_PID=$GEN_PID
    WAIT_PIDS+=("$CHURN_PID")
fi

TRICKLE_PID=
if python3 -c "import sys; sys.exit(0 if $TRICKLE_RATE > 0 else 1)"; then
    if [ -x "$ROBUSTNESS" ]; then
        log "trickle: $ROBUSTNESS trickle at $TRICKLE_RATE/s"
        taskset -c "$GEN_CPU" "$ROBUSTNESS" trickle --target "127.0.0.1:$port" \
            --rate "$TRICKLE_RATE" --duration "$DURATION" >"$OUT_DIR/trickle.txt" 2>&1 &
        TRICKLE_PID=$!
        PIDS+=("$TRICKLE_PID")
    else
        log "warning: $ROBUSTNESS does not exist (the robustness example is not merged yet?): no malformed-request trickle"
    fi
fi
# The calls start last, when the other processes on CPU $GEN_CPU are past their start-up: an
# open-loop generator that falls behind in its first second at a high rate meets
# retransmissions of its own and may never catch up.
sleep 3
log "calls: $RATE/s for $DURATION s (warm-up $WARMUP s), generator on CPU $GEN_CPU"
taskset -c "$GEN_CPU" "$LOAD" call --target "127.0.0.1:$port" --cpus "$GEN_CPU" --threads 1 \
    --users 100 --domain "$DOMAIN" --expires "$uas_expires" --rate "$RATE" --duration "$DURATION" \
    --drain 10 -q --json "$OUT_DIR/calls.json" --hgrm "$OUT_DIR/calls-hgrm" \
    --csv "$OUT_DIR/calls.csv" >"$OUT_DIR/calls.txt" 2>&1 &
CALL_PID=$!
PIDS+=("$CALL_PID")
WAIT_PIDS+=("$CALL_PID")

# The report puts everything on the calls' clock: the sampler's times less this offset.
python3 - "$OUT_DIR/meta.json" "$([ -n "$TRICKLE_PID" ] && echo "$ROBUSTNESS" || echo)" \
    "$(python3 -c "print(round($(date +%s.%N) - $T0, 2))")" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["trickle"] = sys.argv[2] or None
m["calls_offset_s"] = float(sys.argv[3])
json.dump(m, open(sys.argv[1], "w"), indent=2)
EOF

# Progress once a minute while the generators run; the call generator ends the run.
status=0
ticks=0
while kill -0 "$CALL_PID" 2>/dev/null; do
    sleep 5 &
    wait $! || true
    ticks=$((ticks + 1))
    if ((ticks % 12 == 0)) && [ -s "$OUT_DIR/samples.csv" ]; then
        now=$(python3 -c "print(int($(date +%s.%N) - $T0))")
        last=$(tail -1 "$OUT_DIR/samples.csv" | cut -d, -f2,5,6)
        calls=$(tail -n +2 "$OUT_DIR/calls.csv" 2>/dev/null | tail -1 | cut -d, -f1,3,6,7,13 || true)
        log "t=${now}s rss_kib,drops,parse_errors=$last${calls:+; second,calls/s,succeeded,failed,p99_ms=$calls}"
    fi
done
for p in "${WAIT_PIDS[@]}"; do
    wait "$p" || {
        log "warning: generator PID $p exited with status $?"
        status=1
    }
    forget_pid "$p"
done
if [ -n "$TRICKLE_PID" ]; then
    # It runs for DURATION too; give it the drain's time, then stop it.
    for _ in $(seq 1 20); do kill -0 "$TRICKLE_PID" 2>/dev/null || break; sleep 0.5; done
    bench_stop_pid "$TRICKLE_PID"
    forget_pid "$TRICKLE_PID"
fi
sleep "$SAMPLE_INTERVAL" # one last sample after the drain
bench_stop_pid "$SAMPLER_PID"
forget_pid "$SAMPLER_PID"
curl -s "http://127.0.0.1:$mport/metrics" >"$OUT_DIR/metrics-end.txt" 2>/dev/null || true
stop_sipshard
echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT_DIR/loadavg-after"

# ---------------------------------------------------------------------------------------
# 3. The verdict.

rc=0
report "$OUT_DIR" || rc=$?
if [ "$status" != 0 ] && [ "$rc" = 0 ]; then
    log "FAIL: a generator exited with an error (see $OUT_DIR/*.txt)"
    rc=1
fi
exit "$rc"
