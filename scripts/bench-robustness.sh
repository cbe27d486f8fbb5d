#!/usr/bin/env bash
# The mutation suite's cases (crates/testkit/src/mutate, issue 19) through sipshard and through
# Kamailio 5.6 with sanity_check() (scripts/kamailio-robustness.cfg), side by side: per mutated
# field, how many cases each forwarded, refused (a 3xx-6xx answer), dropped (no answer, nothing
# forwarded) or accepted (a REGISTER the registrar took), then every case Kamailio refused or
# dropped and sipshard forwarded or accepted, grouped by field and operator.
#
#   scripts/bench-robustness.sh          # also: scripts/bench.sh robustness
#
# Both proxies run on CPU $SUT_CPU (sipshard with one shard, Kamailio with one UDP worker: one
# sender's messages in order, which the classification relies on), the driver
# (examples/robustness.rs) on CPU $GEN_CPU; everything on 127.0.0.1, over UDP. sipshard gets
# bob registered with the sink as his contact, a default route to the sink for foreign
# domains, and no switch to TCP for large requests; Kamailio forwards every request that
# passes its checks to the sink (and saves REGISTERs in memory), so the same cases are
# forwarded by both when both accept them. Writes bench-results/robustness-{sipshard,kamailio}.json.
set -euo pipefail
cd "$(dirname "$0")/.."

SUT_CPU=${SUT_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
SIPSHARD_PORT=${SIPSHARD_PORT:-15260}
KAMAILIO_PORT=${KAMAILIO_PORT:-15270}
SIPSHARD_SINK=${SIPSHARD_SINK:-15269}
KAMAILIO_SINK=${KAMAILIO_SINK:-15279}
OUT_DIR=${OUT_DIR:-bench-results}

export PATH="$PATH:/usr/sbin"
for tool in kamailio taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench-robustness: $tool is missing (apt-get install -y kamailio util-linux python3)" >&2
        exit 1
    }
done

# Two builds: with the example in the same build, dev-dependencies would change the features
# (and so the build) of the sipshard binary the other benchmarks use.
cargo build --release --quiet --bin sipshard
cargo build --release --quiet --example robustness
SIPSHARD=target/release/sipshard
DRIVER=target/release/examples/robustness

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]:-}"; do
        if [ -n "$p" ]; then bench_stop_pid "$p"; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$OUT_DIR" "$work/kamailio-run"

taskset -c "$SUT_CPU" "$SIPSHARD" --listen "127.0.0.1:$SIPSHARD_PORT" --shards 1 --cpus "$SUT_CPU" \
    --domain example.com --udp-mtu 0 --route "*=127.0.0.1:$SIPSHARD_SINK" \
    --max-bindings-per-aor 100000 --log-level error >"$work/sipshard.log" 2>&1 &
pids+=($!)
bench_wait_sip "$SIPSHARD_PORT" || { cat "$work/sipshard.log" >&2; exit 1; }
echo "sipshard: $(git rev-parse --short HEAD)" >&2
taskset -c "$GEN_CPU" "$DRIVER" run --target "127.0.0.1:$SIPSHARD_PORT" --sink-port "$SIPSHARD_SINK" \
    --register-first --json "$OUT_DIR/robustness-sipshard.json" >"$work/sipshard.table"

sed -e "s/LISTEN_PORT/$KAMAILIO_PORT/; s/SINK_PORT/$KAMAILIO_SINK/" \
    scripts/kamailio-robustness.cfg >"$work/kamailio.cfg"
taskset -c "$SUT_CPU" kamailio -f "$work/kamailio.cfg" -DD -E -m 64 -M 16 \
    -Y "$work/kamailio-run" >"$work/kamailio.log" 2>&1 &
pids+=($!)
bench_wait_sip "$KAMAILIO_PORT" || { cat "$work/kamailio.log" >&2; exit 1; }
echo "$(kamailio -v 2>/dev/null | head -1)" >&2
taskset -c "$GEN_CPU" "$DRIVER" run --target "127.0.0.1:$KAMAILIO_PORT" --sink-port "$KAMAILIO_SINK" \
    --register-first --json "$OUT_DIR/robustness-kamailio.json" >"$work/kamailio.table"

python3 - "$OUT_DIR/robustness-sipshard.json" "$OUT_DIR/robustness-kamailio.json" <<'PY'
import json, sys
from collections import Counter, defaultdict

ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
classes = ["forwarded", "refused", "dropped", "accepted"]
short = {"forwarded": "fwd", "refused": "ref", "dropped": "drop", "accepted": "acc"}
head = " ".join(f"{short[c]:>5}" for c in classes)
print(f"{'base field':<28} | sipshard {head} | kamailio {head}")
for key in sorted(set(ours["fields"]) | set(ref["fields"])):
    row = lambda d: " ".join(f"{d['fields'].get(key, {}).get(c, 0):>5}" for c in classes)
    print(f"{key:<28} |          {row(ours)} |          {row(ref)}")

# Cases Kamailio did not let through (refused or dropped) that sipshard did (forwarded or accepted).
through = {"forwarded", "accepted"}
by_id = {c["id"]: c for c in ref["cases"]}
gaps = [c for c in ours["cases"] if c["outcome"] in through and by_id[c["id"]]["outcome"] not in through]
groups = defaultdict(list)
for c in gaps:
    groups[(c["base"], c["field"], c["operator"])].append(c)
print(f"\n{len(gaps)} cases Kamailio refused or dropped and sipshard let through, by (base, field, operator):")
for (base, field, op), cs in sorted(groups.items()):
    k = Counter(by_id[c["id"]]["outcome"] + (f" {by_id[c['id']]['status']}" if by_id[c["id"]]["status"] else "") for c in cs)
    print(f"  {base} {field} {op}: x{len(cs)} (kamailio: {', '.join(f'{n}x {o}' for o, n in k.items())}) e.g. {cs[0]['case']}")
PY
