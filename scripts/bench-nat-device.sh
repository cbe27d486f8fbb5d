#!/usr/bin/env bash
# What a NAT ping costs when it leaves by a network device rather than loopback (docs/nat.md).
#
# Over loopback (scripts/bench-nat.sh) the kernel delivers each ping into the peer's socket in
# the sender's own system call, so sipshard is charged for the far end's receive as well. Here
# the pings leave by a veth whose far end, in a second network namespace, drops everything at
# ingress (nftables netdev hook), as a NIC takes a frame and the far end is another machine:
#
#   netns pingnic: sipshard on 10.9.0.1 (one shard, SUT_CPU); a peer that registers PING_USERS
#                  users from 10.9.1.2 (IP_TRANSPARENT: an address of the far side) and never
#                  answers; vA 10.9.0.1/16, a permanent neighbour entry for 10.9.1.2
#   netns pingfar: vB 10.9.0.2/16, ingress policy drop
#
# sipshard's CPU over WINDOW s with CRLF pings, with OPTIONS pings (unanswered: the send alone;
# --nat-ping-failures 0 keeps the bindings) and with pings off, PING_USERS / PING_INTERVAL pings
# a second; per ping = (on - off) / pings. The reference, measured in each round while
# sipshard runs with pings off: udp-spray (scripts/udp-tools) sending the same datagrams from
# the same address at the same rate, slots and batches, and doing nothing else (the floor).
# ROUNDS rounds, the runs' order turned each round; medians. CPU is the kernel's per-thread
# accounting (schedstat; getrusage for the floor), which counts the softirq work run in the
# sender's system calls (the far end's receive, on a veth) only on kernels without
# CONFIG_IRQ_TIME_ACCOUNTING (this VM's: not set); sender and floor pay it alike. Prints JSON and
# writes $OUT. About 3 minutes a round. Needs root, ip, nft. Traffic stays inside the two
# namespaces, deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
OUT=${OUT:-bench-results/nat-device.json}
PING_USERS=${PING_USERS:-330000}
PING_INTERVAL=${PING_INTERVAL:-10}
WINDOW=${WINDOW:-20}
ROUNDS=${ROUNDS:-3}
NS=pingnic
FAR=pingfar
PORT=5060
SIPSHARD=target/release/sipshard
SPRAY=target/release/udp-spray
SUT_PID=
cleanup() {
    [ -n "$SUT_PID" ] && kill "$SUT_PID" 2>/dev/null && wait "$SUT_PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$FAR" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$(dirname "$OUT")"
cargo build --release --quiet --bin sipshard
cargo build --release --quiet -p udp-tools --bin udp-spray

ip netns del "$NS" 2>/dev/null || true
ip netns del "$FAR" 2>/dev/null || true
ip netns add "$NS"
ip netns add "$FAR"
ip -n "$NS" link set lo up
ip -n "$NS" link add vA type veth peer name vB netns "$FAR"
ip -n "$NS" addr add 10.9.0.1/16 dev vA
ip -n "$FAR" addr add 10.9.0.2/16 dev vB
ip -n "$NS" link set vA up
ip -n "$FAR" link set vB up
far_mac=$(ip -n "$FAR" -br link show vB | awk '{print $3}')
ip -n "$NS" neigh replace 10.9.1.2 lladdr "$far_mac" dev vA nud permanent
ip netns exec "$FAR" nft -f - <<'EOF'
table netdev far {
    chain in {
        type filter hook ingress device vB priority 0; policy drop;
    }
}
EOF

# Register PING_USERS users from 10.9.1.2 at 20,000/s (the 200s go to the far side, unseen).
register_blind() {
    ip netns exec "$NS" taskset -c "$GEN_CPU" python3 - "$PORT" "$PING_USERS" <<'PYEOF'
import socket, sys, time
port, users = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: send from an address of the far side
s.bind(("10.9.1.2", 0))
reg = ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKdv%d;rport\r\n"
       "Max-Forwards: 70\r\nTo: <sip:u%d@example.com>\r\nFrom: <sip:u%d@example.com>;tag=d\r\n"
       "Call-ID: dv%d\r\nCSeq: 1 REGISTER\r\nContact: <sip:u%d@10.0.0.2:5060>\r\nExpires: 3600\r\n"
       "Content-Length: 0\r\n\r\n")
start = time.monotonic()
for i in range(users):
    while i > (time.monotonic() - start) * 20000:
        time.sleep(0.0005)
    s.sendto((reg % (i, i, i, i, i)).encode(), ("10.9.0.1", port))
PYEOF
}

far_frames() {
    ip -n "$FAR" -s -j link show vB | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'
}

# Run sipshard with the given extra flags; sets CPU_NS (every thread, over WINDOW s) and FRAMES
# (frames the far end dropped in that window: the pings).
cpu_with() {
    ip netns exec "$NS" taskset -c "$SUT_CPU" "$SIPSHARD" --listen "udp:10.9.0.1:$PORT" \
        --shards 1 --cpus "$SUT_CPU" --domain example.com --rcvbuf 8388608 --sndbuf 8388608 \
        --nat always --nat-ping-failures 0 "$@" >/dev/null 2>&1 &
    SUT_PID=$!
    sleep 1
    register_blind
    sleep 2
    kill -0 "$SUT_PID" || { echo "sipshard is not running" >&2; exit 1; }
    local before after frames_before
    frames_before=$(far_frames)
    before=$(bench_cpu_ns "$SUT_PID")
    sleep "$WINDOW"
    after=$(bench_cpu_ns "$SUT_PID")
    FRAMES=$(($(far_frames) - frames_before))
    CPU_NS=$((after - before))
    [ -n "${WHILE_UP:-}" ] && "$WHILE_UP"
    kill "$SUT_PID"
    wait "$SUT_PID" 2>/dev/null || true
    SUT_PID=
}

# The floor (udp-spray): the same datagrams at the same rate from the same address, slot and
# batch as the pinger, with nothing else done; run while sipshard is up with pings off, so the
# kernel is in the same state (sipshard's receive timestamps switch on timestamping for every
# frame). Sets FLOOR_CRLF and FLOOR_OPTIONS (µs of CPU per datagram).
spray() {
    ip netns exec "$NS" taskset -c "$SUT_CPU" "$SPRAY" --from 10.9.0.1:5070 --to 10.9.1.2:5999 \
        --rate $((PING_USERS / PING_INTERVAL)) --seconds "$WINDOW" --payload "$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit("udp-spray: %d refused" % r["failed"]) if r["failed"] else print(r["cpu_ns"] / 1e3 / r["sent"])'
}
floors() {
    FLOOR_CRLF=$(spray crlf)
    FLOOR_OPTIONS=$(spray options)
}

# ROUNDS rounds of the three runs, the order turned each round (the first run of a round
# measured dearer in some rounds whatever it was); a line per run into $ROUNDS_LOG.
ROUNDS_LOG=$(mktemp)
run_mode() {
    case $1 in
    crlf) cpu_with --nat-ping-interval "$PING_INTERVAL" --nat-ping-method crlf ;;
    options) cpu_with --nat-ping-interval "$PING_INTERVAL" ;;
    off) WHILE_UP=floors cpu_with ;;
    esac
    echo "$1 $CPU_NS $FRAMES ${FLOOR_CRLF:-0} ${FLOOR_OPTIONS:-0}" >>"$ROUNDS_LOG"
    echo "round $round, $1: $CPU_NS ns, $FRAMES frames${FLOOR_CRLF:+, floor $FLOOR_CRLF / $FLOOR_OPTIONS us}" >&2
    FLOOR_CRLF= FLOOR_OPTIONS=
}
modes=(crlf options off)
for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < 3; i++)); do
        run_mode "${modes[(i + round) % 3]}"
    done
done

python3 - "$OUT" "$ROUNDS_LOG" <<PYEOF
import json, statistics, sys
n, interval, window = $PING_USERS, $PING_INTERVAL, $WINDOW
pings = n / interval * window
runs = {"crlf": [], "options": [], "off": []}
for line in open(sys.argv[2]):
    mode, cpu, frames, floor_crlf, floor_options = line.split()
    runs[mode].append((int(cpu), int(frames), float(floor_crlf), float(floor_options)))
med = statistics.median
# per round: (on - off) over the pings that left in the window (the far end's frame count; the
# floor divides by what it sent), each on run against the off run of its round
for mode in ("crlf", "options"):
    for cpu, frames, _, _ in runs[mode]:
        if abs(frames - pings) > pings * 0.05:
            sys.exit(f"{mode}: {frames} frames left in the window, {pings:.0f} pings expected")
crlf = [(c[0] - o[0]) / 1e3 / c[1] for c, o in zip(runs["crlf"], runs["off"])]
options = [(c[0] - o[0]) / 1e3 / c[1] for c, o in zip(runs["options"], runs["off"])]
floor_crlf = [o[2] for o in runs["off"]]
floor_options = [o[3] for o in runs["off"]]
out = {
    "ping_bindings": n, "ping_interval_s": interval, "window_s": window, "rounds": len(crlf),
    "pings_expected_per_run": pings,
    # what left by the device in each window: the pings (the REGISTERs' 200s came before it)
    "frames_crlf_window": [c[1] for c in runs["crlf"]],
    "frames_options_window": [c[1] for c in runs["options"]],
    "cpu_s_off": [o[0] / 1e9 for o in runs["off"]],
    "cpu_us_per_crlf_ping_rounds": crlf, "cpu_us_per_options_ping_sent_rounds": options,
    "cpu_us_per_crlf_ping": med(crlf), "cpu_us_per_options_ping_sent": med(options),
    "crlf_core_share_1m_at_30s": med(crlf) * 1e6 / 30 / 1e6,
    "options_send_core_share_1m_at_30s": med(options) * 1e6 / 30 / 1e6,
    # the reference, same rounds: udp-spray sending the same datagrams at the same rate
    "floor_us_per_crlf_rounds": floor_crlf, "floor_us_per_options_rounds": floor_options,
    "floor_us_per_crlf": med(floor_crlf), "floor_us_per_options": med(floor_options),
    "crlf_over_floor": med(c / f for c, f in zip(crlf, floor_crlf)),
    "options_over_floor": med(c / f for c, f in zip(options, floor_options)),
    "floor_crlf_core_share_1m_at_30s": med(floor_crlf) * 1e6 / 30 / 1e6,
    "floor_options_core_share_1m_at_30s": med(floor_options) * 1e6 / 30 / 1e6,
}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
PYEOF
rm -f "$ROUNDS_LOG"
