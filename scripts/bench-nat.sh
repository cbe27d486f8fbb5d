#!/usr/bin/env bash
# What NAT handling costs (docs/nat.md), sipshard against itself in one run:
#
#   1. CPU per REGISTER with --nat off, auto and always: `sipshard-load register` at a fixed
#      RATE for DURATION s, ROUNDS rounds with the three modes interleaved (the machine's noise
#      falls on all three alike); the median of each. sipshard-load writes its own address in
#      Via, so `auto` runs the NAT test and finds no NAT; `always` stores every binding as
#      behind NAT (its source kept as destination). CPU time is the kernel's per-thread
#      accounting in nanoseconds (/proc/PID/task/*/schedstat), not clock ticks.
#   2. NAT pings: PING_USERS bindings registered behind NAT (scripts/nat-ping-peer.py, one UDP
#      socket for all, as phones behind one NAT address, which answers every ping), pinged every
#      PING_INTERVAL s; sipshard's CPU over WINDOW s with pings on, minus the same with pings
#      off (same bindings, idle otherwise): the CPU of one ping sent and its answer taken, and
#      from it the share of a core 1,000,000 bindings at a 30 s interval need; the same with
#      --nat-ping-method crlf (4 bytes, never answered).
#   3. The floor for the same traffic: a ping and its answer are one datagram out and one in,
#      what udp-floor (scripts/udp-tools: recvmmsg/sendmmsg, no parsing) does per message it
#      forwards; its CPU per message forwarded at the ping rate (PING_USERS / PING_INTERVAL per
#      second) for WINDOW s, on the same CPU, so a ping's cost can be read as a multiple of it.
#
# sipshard runs on SUT_CPU (one shard), the generators on GEN_CPU. Writes $OUT (JSON) and
# prints it. About 4 minutes. Usage: scripts/bench-nat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
OUT=${OUT:-bench-results/nat.json}
RATE=${RATE:-20000}
DURATION=${DURATION:-6}
USERS=${USERS:-20000}
ROUNDS=${ROUNDS:-3}
PING_USERS=${PING_USERS:-100000}
PING_INTERVAL=${PING_INTERVAL:-10}
WINDOW=${WINDOW:-20}
HZ=$(getconf CLK_TCK)
SIPSHARD=target/release/sipshard
LOAD=target/release/sipshard-load
WORK=$(mktemp -d)
SUT_PID=
trap '[ -n "$SUT_PID" ] && bench_stop_pid "$SUT_PID"; rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$OUT")"

cargo build --release --quiet --bin sipshard
cargo build --release --quiet -p sipshard-loadtest --bin sipshard-load
cargo build --release --quiet -p udp-tools --bin udp-floor --bin udp-flood

start_sut() { # port, extra flags...
    local port=$1
    shift
    taskset -c "$SUT_CPU" "$SIPSHARD" --listen "udp:127.0.0.1:$port" --shards 1 --cpus "$SUT_CPU" \
        --domain example.com --rcvbuf 8388608 --sndbuf 8388608 "$@" >"$WORK/sut.log" 2>&1 &
    SUT_PID=$!
    bench_wait_sip "$port" || { cat "$WORK/sut.log" >&2; exit 1; }
}


stop_sut() {
    bench_stop_pid "$SUT_PID"
    SUT_PID=
}

# 1. CPU per REGISTER, by mode.
: >"$WORK/register.txt"
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in off auto always; do
        port=$(bench_free_port)
        start_sut "$port" --nat "$mode"
        before=$(bench_cpu_ns "$SUT_PID")
        taskset -c "$GEN_CPU" "$LOAD" register --target "127.0.0.1:$port" --cpus "$GEN_CPU" \
            --rate "$RATE" --duration "$DURATION" --users "$USERS" --domain example.com \
            --drain 2 -q --json "$WORK/reg.json" >/dev/null
        after=$(bench_cpu_ns "$SUT_PID")
        stop_sut
        echo "$mode $((after - before)) $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["succeeded"])' "$WORK/reg.json")" >>"$WORK/register.txt"
        echo "round $r, --nat $mode: $(tail -1 "$WORK/register.txt")" >&2
    done
done

# 2. NAT pings: the same bindings with pings on and off.
ping_cpu() { # interval flags... -> "ticks answered registered"
    local port
    port=$(bench_free_port)
    start_sut "$port" --nat always --nat-ping-failures 0 "$@"
    taskset -c "$GEN_CPU" python3 scripts/nat-ping-peer.py "$port" "$PING_USERS" 20000 \
        $((WINDOW + 4)) >"$WORK/peer.txt" &
    local peer=$!
    # Registered, then one interval for the pings to settle, then the window.
    while ! grep -q registered "$WORK/peer.txt" 2>/dev/null; do sleep 0.2; done
    sleep 2
    local before after
    before=$(bench_cpu_ticks "$SUT_PID")
    sleep "$WINDOW"
    after=$(bench_cpu_ticks "$SUT_PID")
    wait "$peer"
    stop_sut
    echo "$((after - before)) $(python3 -c 'import json,sys; d=[json.loads(l) for l in open(sys.argv[1])]; print(d[-1]["answered"], d[-1]["registered"])' "$WORK/peer.txt")"
}
read -r on_ticks on_answered on_registered < <(ping_cpu --nat-ping-interval "$PING_INTERVAL")
echo "pings on: $on_ticks ticks, $on_answered answered, $on_registered registered" >&2
read -r crlf_ticks _ _ < <(ping_cpu --nat-ping-interval "$PING_INTERVAL" --nat-ping-method crlf)
echo "crlf pings: $crlf_ticks ticks" >&2
read -r off_ticks _ off_registered < <(ping_cpu)
echo "pings off: $off_ticks ticks, $off_registered registered" >&2

# 3. The floor at the ping rate (PING_INTERVAL may be fractional).
ping_rate=$(python3 -c "print(round($PING_USERS / $PING_INTERVAL))")
floor_port=$(bench_free_port)
sink_port=$(bench_free_port)
while [ "$sink_port" = "$floor_port" ]; do sink_port=$(bench_free_port); done
taskset -c "$SUT_CPU" target/release/udp-floor --listen "127.0.0.1:$floor_port" \
    --to "127.0.0.1:$sink_port" --rcvbuf 8388608 --max-seconds $((WINDOW + 30)) >"$WORK/floor.log" 2>&1 &
SUT_PID=$!
for _ in $(seq 1 50); do
    [ -n "$(ss -Hulnp "sport = :$floor_port" 2>/dev/null)" ] && break
    sleep 0.1
done
taskset -c "$GEN_CPU" target/release/udp-flood run --proxy "127.0.0.1:$floor_port" \
    --sink "127.0.0.1:$sink_port" --user bench --label floor --pid "$SUT_PID" --warmup 2 \
    --rate "$ping_rate" --window "$WINDOW" >"$WORK/floor.jsonl"
stop_sut
read -r floor_us floor_valid < <(python3 -c '
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if l.startswith("{") and json.loads(l).get("kind") == "fixed"]
print(steps[-1]["cpu_us_per_msg"], "true" if steps[-1]["valid"] else "false")' "$WORK/floor.jsonl")
echo "floor: $floor_us us per message (valid: $floor_valid)" >&2

python3 - "$WORK/register.txt" "$OUT" <<PYEOF
import json, statistics, sys
hz, rate, users = $HZ, $RATE, $USERS
rows = [l.split() for l in open(sys.argv[1])]
per = {}
for mode, ns, ok in rows:
    per.setdefault(mode, []).append(int(ns) / 1e3 / max(int(ok), 1))
reg = {m: statistics.median(v) for m, v in per.items()}
window, interval, n = $WINDOW, $PING_INTERVAL, $PING_USERS
pings = n / interval * window
extra_s = ($on_ticks - $off_ticks) / hz
us_per_ping = extra_s * 1e6 / pings
us_per_crlf = ($crlf_ticks - $off_ticks) / hz * 1e6 / pings
out = {
    "register_rate": rate, "register_users": users, "rounds": $ROUNDS,
    "cpu_us_per_register": reg,
    "cpu_us_per_register_runs": per,
    "auto_over_off": reg["auto"] / reg["off"],
    "always_over_off": reg["always"] / reg["off"],
    "ping_bindings": n, "ping_registered": $on_registered, "ping_interval_s": interval,
    "ping_window_s": window, "pings_expected": pings, "pings_answered": $on_answered,
    "cpu_s_pings_on": $on_ticks / hz, "cpu_s_pings_off": $off_ticks / hz,
    "cpu_us_per_ping": us_per_ping,
    "core_share_per_100k_at_30s": us_per_ping * 100000 / 30 / 1e6,
    "core_share_1m_at_30s": us_per_ping * 1000000 / 30 / 1e6,
    "cpu_s_crlf_pings": $crlf_ticks / hz,
    "cpu_us_per_crlf_ping": us_per_crlf,
    "crlf_core_share_1m_at_30s": us_per_crlf * 1000000 / 30 / 1e6,
    "floor_cpu_us_per_msg": $floor_us,
    # false: the floor or its flooder was starved of CPU (udp-flood's check); run again.
    "floor_valid": "$floor_valid" == "true",
    "ping_over_floor": us_per_ping / $floor_us,
    "crlf_ping_over_floor": us_per_crlf / $floor_us,
}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out, indent=1))
PYEOF
