#!/usr/bin/env bash
# The cost of a challenged REGISTER on one core: sipshard next to Kamailio.
#
# One challenged registration = REGISTER -> 401 (WWW-Authenticate) -> REGISTER with a Digest
# answer (qop=auth) -> 200: two SIP transactions. Both registrars run on CPU $SUT_CPU (sipshard
# with one shard; Kamailio with one UDP worker, every process of it pinned there), the load
# driver (scripts/register_auth_driver.rs) on CPU $DRIVER_CPU, all on loopback. Each SUT gets the
# same users (u0..u{WINDOW-1}, one password), the same policy (challenge every REGISTER, qop=auth
# with nc replay tracking, the authenticated user must own the To AOR, binding kept in memory)
# and the same load: WINDOW user agents re-registering back to back for DURATION seconds after
# WARMUP seconds. RUNS alternating runs each; the median is reported.
#
# Writes bench-results/register-auth.json and prints it.
#
#   scripts/bench-register-auth.sh                   # defaults below
#   DURATION=20 RUNS=5 WINDOW=400 scripts/bench-register-auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WINDOW=${WINDOW:-200}
RUNS=${RUNS:-3}
SUT_CPU=${SUT_CPU:-0}
DRIVER_CPU=${DRIVER_CPU:-1}
SIPSHARD_PORT=${SIPSHARD_PORT:-15160}
KAMAILIO_PORT=${KAMAILIO_PORT:-15170}
DOMAIN=bench.example.com
PASSWORD=bench-pw
OUT=${OUT:-bench-results/register-auth.json}

for tool in kamailio taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "bench-register-auth: $tool is missing (apt-get install -y kamailio util-linux python3)" >&2
        exit 1
    }
done
KAMAILIO=$(command -v kamailio || echo /usr/sbin/kamailio)

# Two builds: with the example in the same build, dev-dependencies would change the features
# (and so the build) of the sipshard binary the other benchmarks use.
cargo build --release --quiet --bin sipshard
cargo build --release --quiet --example register-auth-driver
SIPSHARD=target/release/sipshard
DRIVER=target/release/examples/register-auth-driver

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for ((i = 0; i < WINDOW; i++)); do echo "u$i:$PASSWORD"; done >"$work/users"
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sed -e "s/LISTEN/127.0.0.1:$KAMAILIO_PORT/; s/DOMAIN/$DOMAIN/; s/PASSWORD/$PASSWORD/; s/SECRET/$secret/" \
    scripts/kamailio-auth.cfg >"$work/kamailio.cfg"
mkdir -p "$work/kamailio-run"

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# run_driver PORT LABEL: one measured run; prints the driver's JSON with the SUT's CPU share.
run_driver() {
    local port=$1 main=$2
    local before after t0 t1 json
    before=$(bench_cpu_ticks "$main")
    t0=$(date +%s.%N)
    json=$(taskset -c "$DRIVER_CPU" "$DRIVER" --target "127.0.0.1:$port" --domain "$DOMAIN" \
        --password "$PASSWORD" --window "$WINDOW" --warmup "$WARMUP" --duration "$DURATION")
    t1=$(date +%s.%N)
    after=$(bench_cpu_ticks "$main")
    python3 - "$json" "$before" "$after" "$t0" "$t1" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
before, after, t0, t1, hz = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
d["sut_cpu_share"] = round((after - before) / hz / (t1 - t0), 3)
print(json.dumps(d))
EOF
}

wait_port() {
    bench_wait_sip "$1" && return 0
    echo "bench-register-auth: nothing answers on port $1" >&2
    return 1
}

start_sipshard() {
    taskset -c "$SUT_CPU" "$SIPSHARD" --listen "127.0.0.1:$SIPSHARD_PORT" --shards 1 --cpus "$SUT_CPU" \
        --domain "$DOMAIN" --users "$work/users" --auth register --rcvbuf 8388608 --sndbuf 8388608 \
        --log-level error \
        >"$work/sipshard.log" 2>&1 &
    sipshard_pid=$!
    pids+=("$sipshard_pid")
    wait_port "$SIPSHARD_PORT"
}

start_kamailio() {
    taskset -c "$SUT_CPU" "$KAMAILIO" -f "$work/kamailio.cfg" -DD -E -m 256 -M 32 \
        -Y "$work/kamailio-run" >"$work/kamailio.log" 2>&1 &
    kamailio_pid=$!
    pids+=("$kamailio_pid")
    wait_port "$KAMAILIO_PORT" || { cat "$work/kamailio.log" >&2; return 1; }
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_sipshard
start_kamailio
# Kamailio's OPTIONS probe gets 405, which still proves it is up.

: >"$work/sipshard.runs"
: >"$work/kamailio.runs"
for ((r = 1; r <= RUNS; r++)); do
    echo "run $r/$RUNS: sipshard" >&2
    run_driver "$SIPSHARD_PORT" "$sipshard_pid" | tee -a "$work/sipshard.runs" >&2
    echo "run $r/$RUNS: kamailio" >&2
    run_driver "$KAMAILIO_PORT" "$kamailio_pid" | tee -a "$work/kamailio.runs" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$OUT")"
python3 - "$work" "$OUT" "$DURATION" "$WARMUP" "$WINDOW" "$SUT_CPU" "$DRIVER_CPU" \
    "$load_before" "$load_after" "$("$KAMAILIO" -v | head -1)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF'
import json, statistics, sys, datetime
work, out, duration, warmup, window, sut_cpu, driver_cpu, lb, la, kver, commit = sys.argv[1:12]
def side(name):
    runs = [json.loads(l) for l in open(f"{work}/{name}.runs") if l.strip()]
    rate = statistics.median(r["registrations_per_sec"] for r in runs)
    # Registrations per second of CPU time the registrar actually got: the cost per challenged
    # REGISTER on a core it would have to itself (the rate above is capped by how much of CPU
    # $SUT_CPU other processes left it).
    per_cpu = statistics.median(r["registrations_per_sec"] / max(r["sut_cpu_share"], 1e-9) for r in runs)
    return {
        "median_challenged_registrations_per_sec": round(rate, 1),
        "median_register_transactions_per_sec": round(2 * rate, 1),
        "median_sut_cpu_share": statistics.median(r["sut_cpu_share"] for r in runs),
        "median_challenged_registrations_per_cpu_second": round(per_cpu, 1),
        "median_register_transactions_per_cpu_second": round(2 * per_cpu, 1),
        "microseconds_cpu_per_challenged_registration": round(1e6 / per_cpu, 2),
        "runs": runs,
    }
s, k = side("sipshard"), side("kamailio")
ratio = s["median_challenged_registrations_per_sec"] / max(k["median_challenged_registrations_per_sec"], 1e-9)
result = {
    "benchmark": "challenged REGISTER: REGISTER -> 401 -> REGISTER with Digest (qop=auth) -> 200, per core",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "commit": commit,
    "sut_cpu": int(sut_cpu),
    "driver_cpu": int(driver_cpu),
    "window_user_agents": int(window),
    "warmup_s": float(warmup),
    "duration_s": float(duration),
    "load_average_before": lb,
    "load_average_after": la,
    "sipshard": dict(config="--shards 1 --auth register, users file, per-start secret", **s),
    "kamailio": dict(version=kver, config="scripts/kamailio-auth.cfg: children=1, auth (qop=auth, nonce_count) + registrar + usrloc db_mode 0", **k),
    "ratio_sipshard_over_kamailio": round(ratio, 2),
    "ratio_per_cpu_second": round(s["median_challenged_registrations_per_cpu_second"] / max(k["median_challenged_registrations_per_cpu_second"], 1e-9), 2),
    "target_ratio": 3.0,
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(json.dumps(result, indent=2))
EOF
