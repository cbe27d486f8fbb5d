#!/usr/bin/env bash
# What reclaiming lapsed registrations costs a shard that serves (docs/tuning.md, "Expiry
# limits and memory"): one shard (SUT_CPU) holding AORS registrations answers an OPTIONS probe
# every 2 ms for 6 s (scripts' own Python client on GEN_CPU); prints the probe's round-trip
# p50/p99/p99.9/max and the shard's CPU over the probe, twice:
#
#   1. steady: AORS registered for an hour (nothing lapses during the probe);
#   2. mass expiry: AORS registered for 60 s at 50,000/s, probed from 60 s after the first
#      REGISTER, as they lapse: 50,000 a second, more than the 20,000 a second a shard purges,
#      so the purge runs flat out and falls behind (lookups ignore lapsed bindings meanwhile;
#      the bindings gauge lags).
#
# A purge that walked the whole table showed as a stall of the shard every second (p99.9 and
# max); one that visits what lapsed does not. Loopback only; about 3 minutes for 1,000,000.
# Usage: AORS=1000000 scripts/bench-purge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
AORS=${AORS:-1000000}
RATE=50000
SUT_PID=
WORK=$(mktemp -d)
trap '[ -n "$SUT_PID" ] && bench_stop_pid "$SUT_PID"; rm -rf "$WORK"' EXIT
cargo build --release --quiet --bin sipshard
cargo build --release --quiet -p sipshard-loadtest --bin sipshard-load


# probe PORT: an OPTIONS every 2 ms for 6 s, round trips summarised.
probe() {
    taskset -c "$GEN_CPU" python3 - "$1" <<'PYEOF'
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(2)
me = "%s:%d" % s.getsockname()
rtts = []
end = time.monotonic() + 6
while time.monotonic() < end:
    i = len(rtts)
    msg = ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKpg%d\r\n"
           "Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\nFrom: <sip:probe@%s>;tag=1\r\n"
           "Call-ID: pg%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % (port, me, i, me, i))
    t = time.monotonic()
    s.sendto(msg.encode(), ("127.0.0.1", port))
    s.recvfrom(65535)
    rtts.append((time.monotonic() - t) * 1e3)
    time.sleep(0.002)
rtts.sort()
at = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))]
print("probes %d, round trip ms: p50 %.3f p99 %.3f p99.9 %.3f max %.3f" % (len(rtts), at(.5), at(.99), at(.999), rtts[-1]))
PYEOF
}

# run EXPIRES WAIT: register AORS for EXPIRES s, wait WAIT s, probe.
run() {
    local port start
    port=$(bench_free_port)
    taskset -c "$SUT_CPU" target/release/sipshard --listen "udp:127.0.0.1:$port" --shards 1 \
        --cpus "$SUT_CPU" --domain example.com --rcvbuf 8388608 --min-expires 10 >/dev/null 2>&1 &
    SUT_PID=$!
    bench_wait_sip "$port"
    start=$(date +%s)
    taskset -c "$GEN_CPU" target/release/sipshard-load register --target "127.0.0.1:$port" \
        --cpus "$GEN_CPU" --rate "$RATE" --duration $((AORS / RATE + 1)) --users "$AORS" \
        --domain example.com --expires "$1" --drain 2 -q --json "$WORK/reg.json" >/dev/null
    local ok
    ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["succeeded"])' "$WORK/reg.json")
    ((ok >= AORS)) || { echo "only $ok of $AORS REGISTERs succeeded" >&2; exit 1; }
    sleep $((start + $2 - $(date +%s) > 0 ? start + $2 - $(date +%s) : 0))
    local before after
    before=$(bench_cpu_ns "$SUT_PID")
    probe "$port"
    after=$(bench_cpu_ns "$SUT_PID")
    echo "shard CPU over the probe: $(((after - before) / 1000000)) ms"
    bench_stop_pid "$SUT_PID"
    SUT_PID=
}

echo "== $AORS AORs, steady (expires 3600)"
run 3600 0
echo "== $AORS AORs, all lapsing during the probe (expires 60)"
run 60 60
