#!/usr/bin/env bash
# TLS handshakes and the handshake storm (scripts/bench.sh tls runs it after the forwarding
# half, scripts/bench-forward.sh with sipshard-tls and kamailio-tls).
#
# Handshakes: sipshard (1 shard) and Kamailio 5.6 with its TLS module (one TCP worker, the
# work of every handshake), each pinned to CPU $SUT_CPU, certificates ECDSA P-256
# (scripts/bench-tls-certs.sh). `sipshard-load options --transport tls --tls-handshakes-only`
# on CPU $GEN_CPU keeps $CONNECTIONS handshakes going for $DURATION s (connect, handshake,
# CRLF ping, pong, close, again): resumed handshakes (TLS 1.3 tickets, the client's default),
# then full ones (--tls-no-resume). Per system: handshakes/s and the CPU µs each cost the
# proxy (every thread of every process, from /proc).
#
# Storm (sipshard): UDP forwarding at $STORM_RATE/s through the same shard (udp-flood, one
# sample in 8 timed from send to the sink) alone, then while $STORM_CONNECTIONS connections at
# a time do full handshakes flat out: the forwarding latency with and without the storm, the
# handshakes done meanwhile, and what the handshake gate shed. The handshake generator runs at
# nice 10 on the flooder's CPU, so the flooder's timing is not its victim.
#
# Output: $OUT_JSON (bench-results/tls-handshakes.json) and raw files in $RAW. Loopback only,
# every run bounded by its duration, every process stopped by its PID on exit.
#
# Environment (defaults): SUT_CPU=0 GEN_CPU=1 DURATION=5 CONNECTIONS=64 STORM_RATE=5000
# STORM_CONNECTIONS=512 STORM_WINDOW=5 OUT_DIR=bench-results OUT_JSON=$OUT_DIR/tls-handshakes.json
# RAW=$OUT_DIR/raw-tls-handshakes
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
STORM_RATE=${STORM_RATE:-5000}
STORM_CONNECTIONS=${STORM_CONNECTIONS:-512}
STORM_WINDOW=${STORM_WINDOW:-5}
OUT_DIR=${OUT_DIR:-$ROOT/bench-results}
OUT_JSON=${OUT_JSON:-$OUT_DIR/tls-handshakes.json}
RAW=${RAW:-$OUT_DIR/raw-tls-handshakes}

SIPSHARD_PORT=5060
SIPSHARD_TLS_PORT=5061
METRICS_PORT=5069
KAMAILIO_PORT=5070 # scripts/kamailio-bench.cfg
KAMAILIO_TLS_PORT=5071
SINK=127.0.0.1:5090
BIN="$ROOT/target/release"
RUN_DIR=$(mktemp -d /tmp/bench-tls.XXXXXX)
CERTS="$RUN_DIR/certs"
SUT_PID=""

log() { printf '[bench-tls] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

cleanup() {
    [[ -n "$SUT_PID" ]] && bench_stop_pid "$SUT_PID"
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in cargo taskset python3 openssl kamailio; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
log "building sipshard, sipshard-load and udp-tools (release)"
(cd "$ROOT" && cargo build --release --quiet --bin sipshard --bin sipshard-load -p sipshard \
    -p sipshard-loadtest -p udp-tools)
mkdir -p "$OUT_DIR" "$RAW"
"$ROOT/scripts/bench-tls-certs.sh" "$CERTS"
bench_kamailio_tls_cfg "$RUN_DIR/kamailio-tls.cfg" "$CERTS"

# Start system $1 on CPU $SUT_CPU; sets SUT_PID and TLS_PORT.
start_sut() {
    case "$1" in
    sipshard)
        TLS_PORT=$SIPSHARD_TLS_PORT
        taskset -c "$SUT_CPU" "$BIN/sipshard" --listen "127.0.0.1:$SIPSHARD_PORT" \
            --listen "tls:127.0.0.1:$TLS_PORT" --tls-cert "$CERTS/server.pem" \
            --tls-key "$CERTS/server.key" --shards 1 --cpus "$SUT_CPU" \
            --tcp-max-connections-per-ip 50000 --metrics "127.0.0.1:$METRICS_PORT" \
            >"$RAW/$1.log" 2>&1 &
        ;;
    kamailio)
        TLS_PORT=$KAMAILIO_TLS_PORT
        mkdir -p "$RUN_DIR/kamailio"
        taskset -c "$SUT_CPU" kamailio -f "$ROOT/scripts/kamailio-bench.cfg" -A WITH_TLS \
            -A "TLS_CONFIG=\"$RUN_DIR/kamailio-tls.cfg\"" -DD -E -m 1536 -M 16 --atexit=no \
            -Y "$RUN_DIR/kamailio" >"$RAW/$1.log" 2>&1 &
        ;;
    esac
    SUT_PID=$!
    for _ in $(seq 1 50); do
        kill -0 "$SUT_PID" 2>/dev/null || { cat "$RAW/$1.log" >&2; die "$1 exited"; }
        ss -Hltn "sport = :$TLS_PORT" | grep -q . && return 0
        sleep 0.1
    done
    die "$1 is not listening on TLS port $TLS_PORT"
}

stop_sut() {
    bench_stop_pid "$SUT_PID"
    SUT_PID=""
}

# Handshakes flat out against system $1 for $DURATION s; $2 = resumed|full; $3... more flags.
handshakes() {
    local name=$1 kind=$2 resume=()
    [[ "$kind" == full ]] && resume=(--tls-no-resume)
    local before after
    before=$(bench_cpu_ticks "$SUT_PID")
    taskset -c "$GEN_CPU" "$BIN/sipshard-load" options --target "127.0.0.1:$TLS_PORT" \
        --transport tls --tls-ca "$CERTS/ca.pem" --tls-server-name localhost \
        --tls-handshakes-only "${resume[@]}" --connections "$CONNECTIONS" --threads 1 \
        --duration "$DURATION" --json "$RAW/$name.$kind.json" -q "${@:3}" >&2
    after=$(bench_cpu_ticks "$SUT_PID")
    echo "$((after - before))" >"$RAW/$name.$kind.ticks"
}

for name in sipshard kamailio; do
    log "== handshakes: $name"
    start_sut "$name"
    handshakes "$name" resumed
    handshakes "$name" full
    stop_sut
done

# The storm: forwarding latency over UDP alone, then with full handshakes flat out.
log "== storm: sipshard forwarding at $STORM_RATE/s, then with $STORM_CONNECTIONS handshakes at a time"
start_sut sipshard
"$BIN/udp-flood" register --proxy "127.0.0.1:$SIPSHARD_PORT" --user bench --contact "$SINK"
flood() {
    taskset -c "$GEN_CPU" "$BIN/udp-flood" run --proxy "127.0.0.1:$SIPSHARD_PORT" --sink "$SINK" \
        --user bench --label "$1" --pid "$SUT_PID" --rate "$STORM_RATE" --window "$STORM_WINDOW" \
        --warmup 1 >"$RAW/storm.$1.jsonl"
}
metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v s="$1" 'index($0, s) == 1 { print $2; exit }'
}
flood calm
shed_before=$(metric 'sipshard_tls_handshakes_total{shard="total",result="shed"}')
nice -n 10 taskset -c "$GEN_CPU" "$BIN/sipshard-load" options --target "127.0.0.1:$SIPSHARD_TLS_PORT" \
    --transport tls --tls-ca "$CERTS/ca.pem" --tls-server-name localhost --tls-handshakes-only \
    --tls-no-resume --connections "$STORM_CONNECTIONS" --threads 1 \
    --duration "$(python3 -c "print($STORM_WINDOW + 3)")" --json "$RAW/storm.handshakes.json" -q \
    >&2 &
STORM_PID=$!
sleep 1
flood storm
wait "$STORM_PID" || log "the storm's generator reported failures (shed connections count as failed)"
shed_after=$(metric 'sipshard_tls_handshakes_total{shard="total",result="shed"}')
echo "$((${shed_after:-0} - ${shed_before:-0}))" >"$RAW/storm.shed"
stop_sut

export RAW DURATION CONNECTIONS STORM_RATE STORM_CONNECTIONS SUT_CPU GEN_CPU
CLK_TCK=$(getconf CLK_TCK)
KAMAILIO_VERSION=$(kamailio -v 2>/dev/null | sed -n 's/^version: //p' | head -1)
export CLK_TCK KAMAILIO_VERSION
python3 - "$OUT_JSON" <<'PY'
import json, os, sys
raw = os.environ["RAW"]
tck = int(os.environ["CLK_TCK"])

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def first_json_line(path, kind):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("{") and json.loads(line).get("kind") == kind:
                    return json.loads(line)
    except OSError:
        pass
    return {}

systems = {}
for name in ("sipshard", "kamailio"):
    sys_ = {}
    for kind in ("resumed", "full"):
        r = load(f"{raw}/{name}.{kind}.json")
        tls = r.get("tls", {})
        done = tls.get("handshakes") or 0
        ticks = int(open(f"{raw}/{name}.{kind}.ticks").read() or 0) if os.path.exists(f"{raw}/{name}.{kind}.ticks") else 0
        sys_[kind] = {
            "handshakes_per_s": tls.get("handshakes_per_s"),
            "handshakes": done,
            "resumed": tls.get("resumed"),
            "full": tls.get("full"),
            "failed": tls.get("failed"),
            "sut_cpu_us_per_handshake": round(ticks * 1e6 / tck / done, 1) if done else None,
            "handshake_ms": tls.get("handshake_ms"),
            "generator_cpu": tls.get("generator_cpu"),
        }
    systems[name] = sys_

def ratio(kind, key="handshakes_per_s", inverse=False):
    a = (systems["sipshard"].get(kind) or {}).get(key)
    b = (systems["kamailio"].get(kind) or {}).get(key)
    if not (a and b):
        return None
    return round(b / a if inverse else a / b, 2)

# On two CPUs one generator thread verifying every server certificate runs out before sipshard
# does: its rate is then the generator's. The CPU each handshake costs each proxy gives what
# one core of each would sustain (1 s / CPU per handshake): the capacity ratio.
def capacity(kind):
    return ratio(kind, "sut_cpu_us_per_handshake", inverse=True)

def generator_limited(kind):
    return ((systems["sipshard"].get(kind) or {}).get("generator_cpu") or 0) >= 0.95

calm = first_json_line(f"{raw}/storm.calm.jsonl", "fixed").get("step", {})
storm = first_json_line(f"{raw}/storm.storm.jsonl", "fixed").get("step", {})
gen = load(f"{raw}/storm.handshakes.json").get("tls", {})
shed = int(open(f"{raw}/storm.shed").read().strip() or 0) if os.path.exists(f"{raw}/storm.shed") else None
doc = {
    "kamailio_version": os.environ.get("KAMAILIO_VERSION"),
    "duration_s": float(os.environ["DURATION"]),
    "connections": int(os.environ["CONNECTIONS"]),
    "sut_cpu": int(os.environ["SUT_CPU"]), "gen_cpu": int(os.environ["GEN_CPU"]),
    "systems": systems,
    "ratios": {"full": ratio("full"), "resumed": ratio("resumed"),
               "full_capacity": capacity("full"), "resumed_capacity": capacity("resumed")},
    "generator_limited": {"full": generator_limited("full"), "resumed": generator_limited("resumed")},
    "targets": {
        "full_handshakes_at_least_3x_kamailio": {
            "ratio": ratio("full"), "capacity_ratio": capacity("full"),
            "generator_limited": generator_limited("full"),
            "met": (ratio("full") or 0) >= 3
            or (generator_limited("full") and (capacity("full") or 0) >= 3),
        },
    },
    "storm": {
        "rate": int(os.environ["STORM_RATE"]),
        "connections": int(os.environ["STORM_CONNECTIONS"]),
        "calm": {k: calm.get(k) for k in ("fwd_rate", "ratio", "latency_p50_us", "latency_p99_us", "latency_p999_us", "valid")},
        "storm": {k: storm.get(k) for k in ("fwd_rate", "ratio", "latency_p50_us", "latency_p99_us", "latency_p999_us", "valid")},
        "handshakes_per_s": gen.get("handshakes_per_s"),
        "handshakes": gen.get("handshakes"),
        "failed": gen.get("failed"),
        "shed": shed,
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
for name, s in systems.items():
    for kind, r in s.items():
        print(f"{name:<10}{kind:<8}{r['handshakes_per_s'] or 0:>10.0f} handshakes/s"
              f"  {r['sut_cpu_us_per_handshake']} us CPU each  (resumed {r['resumed']}, full {r['full']}, failed {r['failed']})")
print(f"ratios sipshard/kamailio: {doc['ratios']}")
st = doc["storm"]
print(f"storm: forwarding p50/p99 {st['calm']['latency_p50_us']}/{st['calm']['latency_p99_us']} us calm, "
      f"{st['storm']['latency_p50_us']}/{st['storm']['latency_p99_us']} us during {st['handshakes_per_s']} "
      f"full handshakes/s ({st['shed']} shed); forwarded {st['calm']['ratio']} / {st['storm']['ratio']}")
print(f"results: {sys.argv[1]}")
PY
