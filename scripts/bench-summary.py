#!/usr/bin/env python3
"""Collect every figure of a scripts/bench.sh run into one JSON and a markdown table.

    scripts/bench-summary.py bench-results [--markdown docs/benchmarks-results.md]

Reads what the sections left in the results directory (forward.json, calls/, register/,
register-auth.json, generators/loadgen.json, memory/, cluster.json, run.json), writes
bench-results/summary.json and, with --markdown, the generated results page (the soak section
that scripts/soak.sh put between its markers is carried over). Sections that did not run are
left out. Standard library only.
"""

import argparse
import datetime
import json
import re
import os
import platform
import subprocess


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ratio(a, b, digits=2):
    return round(a / b, digits) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def machine():
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
    }


FORWARD_KEYS = [
    "cpu_us_per_msg", "latency_p50_us", "latency_p99_us", "saturation_msgs_per_s",
    "cpu_us_per_msg_saturated", "max_clean_offered", "flooder_limited", "valid",
]


def forward(res):
    f = load(os.path.join(res, "forward.json"))
    if not f:
        return None
    return {
        "fixed_rate": f.get("fixed_rate"),
        "kamailio_version": f.get("kamailio_version"),
        "systems": {k: {x: v.get(x) for x in FORWARD_KEYS} for k, v in f["systems"].items()},
        "ratios": f.get("ratios"),
    }


def calls(res):
    d = os.path.join(res, "calls")
    if not os.path.isdir(d):
        return None
    out = {}
    for name in ("sipshard", "sipshard-2shards", "kamailio"):
        fm = load(os.path.join(d, f"{name}-findmax.json"))
        if not fm:
            continue
        row = {
            "max_clean_rate": fm.get("max_clean_rate"),
            "first_unclean_rate": fm.get("first_unclean_rate"),
            "generator_limited": fm.get("generator_limited"),
            "trial_duration_s": fm.get("trial_duration_s"),
            "verdict": fm.get("verdict"),
        }
        for pct in (50, 90):
            r = load(os.path.join(d, f"{name}-{pct}.json"))
            if not r:
                continue
            lat = r.get("latency_ms", {}).get("invite_to_200", {})
            cpu = load(os.path.join(d, f"{name}-{pct}.cpu.json")) or {}
            row[f"at_{pct}pct"] = {
                "target_rate": r.get("target_rate"),
                "achieved_rate": round(r.get("achieved_rate", 0), 1),
                "attempted": r.get("attempted"),
                "failed": r.get("failed"),
                "invite_to_200_ms": {k: lat.get(k) for k in ("p50", "p99", "p999", "max")},
                "generator_kept_schedule": r.get("generator_kept_schedule"),
                "sut_cpu_us_per_call": cpu.get("cpu_us_per_call"),
            }
        out[name] = row
    if not out:
        return None
    s, k = out.get("sipshard", {}), out.get("kamailio", {})
    out["ratios"] = {
        "sipshard/kamailio max_clean_rate": ratio(s.get("max_clean_rate"), k.get("max_clean_rate")),
        "sipshard-2shards/sipshard max_clean_rate": ratio(
            out.get("sipshard-2shards", {}).get("max_clean_rate"), s.get("max_clean_rate")),
    }
    return out


def register(res):
    out = {}
    for name in ("sipshard", "kamailio"):
        fm = load(os.path.join(res, "register", f"{name}-findmax.json"))
        if fm:
            out.setdefault("find_max", {})[name] = {
                "max_clean_rate": fm.get("max_clean_rate"),
                "first_unclean_rate": fm.get("first_unclean_rate"),
                "generator_limited": fm.get("generator_limited"),
                "trial_duration_s": fm.get("trial_duration_s"),
            }
    if "find_max" in out:
        fm = out["find_max"]
        fm["ratio_sipshard_over_kamailio"] = ratio(
            fm.get("sipshard", {}).get("max_clean_rate"), fm.get("kamailio", {}).get("max_clean_rate"))
    ra = load(os.path.join(res, "register-auth.json"))
    if ra:
        keys = ["median_challenged_registrations_per_sec", "median_sut_cpu_share",
                "microseconds_cpu_per_challenged_registration"]
        out["closed_loop"] = {
            "duration_s": ra.get("duration_s"),
            "window_user_agents": ra.get("window_user_agents"),
            "sipshard": {k: ra["sipshard"].get(k) for k in keys},
            "kamailio": {k: ra["kamailio"].get(k) for k in keys},
            "ratio_sipshard_over_kamailio": ra.get("ratio_sipshard_over_kamailio"),
            "ratio_per_cpu_second": ra.get("ratio_per_cpu_second"),
        }
    return out or None


def memory(res):
    d = os.path.join(res, "memory")
    if not os.path.isdir(d):
        return None
    out = {}
    for name in ("sipshard", "sipshard-2shards"):
        m = load(os.path.join(d, f"{name}.json"))
        if m:
            out[name] = m
    lt = load(os.path.join(d, "location_memory.json"))
    if lt:
        lt.pop("kind", None)
        out["location_table"] = lt
    return out or None


def clean_note(s):
    """How find-max's trials were judged, from the run's settings."""
    ms = None
    for v in s.get("run", {}).get("sections", {}).values():
        ms = v.get("max_latency_ms", ms)
    return f" and a p99 latency under {ms:g} ms" if ms else ""


def fmt(v, spec=",.0f", unit=""):
    if isinstance(v, bool) or v is None:
        return "-"
    if isinstance(v, (int, float)):
        return format(v, spec) + unit
    return str(v)


def table(lines, header, rows):
    """A markdown table: `header` cells ending in ':' are right-aligned; a blank line after."""
    names = [h.rstrip(":") for h in header]
    lines.append("| " + " | ".join(names) + " |")
    lines.append("|" + "|".join("---:" if h.endswith(":") else "---" for h in header) + "|")
    lines.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
    lines.append("")


def markdown(s):
    modes = {v.get("mode") for v in s.get("run", {}).get("sections", {}).values()}
    L = ["<!-- Generated by scripts/bench.sh (scripts/bench-summary.py) from bench-results/summary.json. Do not edit. -->", ""]
    L.append("# Benchmark results")
    L.append("")
    if "quick" in modes:
        L.append("> **Quick run, noisy machine — to be replaced.** These figures come from "
                 "`scripts/bench.sh --quick` (short trials, fewer AORs) on a machine shared with "
                 "other work; they show that the script works, not how fast anything is. "
                 "A full `scripts/bench.sh` run on a quiet machine regenerates this page.")
        L.append("")
    m = s["machine"]
    L.append(f"Generated {s['generated']} on revision `{s['revision']}`. Machine: {m['cpus']} CPUs "
             f"({m['cpu_model']}), kernel {m['kernel']}. System under test on CPU 0, generator on "
             f"CPU 1; the 2-shard rows put the second shard on the generator's CPU.")
    L.append("")
    secs = s.get("run", {}).get("sections", {})
    if secs:
        table(L, ["section", "mode", "revision", "finished (UTC)", "load average after"],
              [[k, v.get("mode"), f"`{v.get('revision')}`", v.get("finished"), " ".join(v.get("loadavg", []))]
               for k, v in secs.items()])

    f = s.get("forward")
    if f:
        L.append("## Forwarding: CPU per message and saturation")
        L.append("")
        L.append(f"INVITEs for one registered AOR, each a new transaction (`scripts/bench-forward.sh`). "
                 f"CPU per message at {fmt(f['fixed_rate'])}/s offered, and the most forwarded per "
                 f"second in a ramp.")
        L.append("")
        table(L, ["system", "CPU µs/msg:", "p50 latency µs:", "saturation msg/s:", "CPU µs/msg saturated:", "valid"],
              [[k, fmt(v["cpu_us_per_msg"], ".2f"), fmt(v["latency_p50_us"]),
                fmt(v["saturation_msgs_per_s"]) + (" (flooder-limited)" if v.get("flooder_limited") else ""),
                fmt(v["cpu_us_per_msg_saturated"], ".2f"), "yes" if v.get("valid") else "no (starved)"]
               for k, v in f["systems"].items()])
        if f.get("ratios"):
            table(L, ["ratio", "CPU/msg:", "CPU/msg saturated:", "saturation:"],
                  [[k, fmt(v["cpu_us_per_msg"], ".3f"), fmt(v["cpu_us_per_msg_saturated"], ".3f"),
                    fmt(v["saturation_msgs_per_s"], ".2f", "x")] for k, v in f["ratios"].items()])

    c = s.get("calls")
    if c:
        L.append("## Calls: highest clean rate and INVITE→200 latency")
        L.append("")
        L.append(f"`sipshard-load find-max call`: the highest rate whose trial had zero failed calls{clean_note(s)}; "
                 "then calls at 50 % and 90 % of that rate, each through a freshly started proxy. "
                 "Latency in ms; CPU is the proxy's per completed call.")
        L.append("")
        rows = []
        for k, v in c.items():
            if k == "ratios":
                continue
            for pct in (50, 90):
                r = v.get(f"at_{pct}pct")
                head = ([k, fmt(v["max_clean_rate"]) + (" (generator-limited)" if v.get("generator_limited") else "")]
                        if pct == 50 else ["", ""])
                if not r:
                    rows.append(head + [f"{pct} %"] + ["-"] * 6)
                    continue
                lat = r["invite_to_200_ms"]
                rows.append(head + [f"{pct} %", fmt(r["achieved_rate"]), fmt(r["failed"], "d"), fmt(lat["p50"], ".2f"),
                                    fmt(lat["p99"], ".2f"), fmt(lat["p999"], ".2f"), fmt(r["sut_cpu_us_per_call"], ".1f")])
        table(L, ["proxy", "max clean calls/s:", "at:", "calls/s:", "failed:", "p50:", "p99:", "p99.9:",
                  "proxy CPU µs/call:"], rows)
        for k, v in c.get("ratios", {}).items():
            if v is not None:
                L.append(f"- {k}: **{v}x**")
        L.append("")

    r = s.get("register")
    if r:
        L.append("## Registrations with Digest authentication")
        L.append("")
        fm = r.get("find_max")
        if fm:
            L.append("`sipshard-load find-max register`: each attempt a REGISTER answered with Digest "
                     f"credentials (qop=auth) until 200; the highest rate with zero failures{clean_note(s)}.")
            L.append("")
            table(L, ["registrar", "max clean registrations/s:"],
                  [[k, fmt(fm[k]["max_clean_rate"]) + (" (generator-limited)" if fm[k].get("generator_limited") else "")]
                   for k in ("sipshard", "kamailio") if k in fm]
                  + [["ratio", fmt(fm.get("ratio_sipshard_over_kamailio"), ".2f", "x")]])
        cl = r.get("closed_loop")
        if cl:
            L.append(f"Closed loop (`scripts/bench-register-auth.sh`, {cl['window_user_agents']} user agents "
                     "back to back; REGISTER → 401 → REGISTER with Digest → 200):")
            L.append("")
            table(L, ["registrar", "challenged registrations/s:", "CPU share:", "CPU µs per registration:"],
                  [[k, fmt(cl[k]["median_challenged_registrations_per_sec"]), fmt(cl[k]["median_sut_cpu_share"], ".2f"),
                    fmt(cl[k]["microseconds_cpu_per_challenged_registration"], ".1f")] for k in ("sipshard", "kamailio")]
                  + [["ratio", fmt(cl.get("ratio_sipshard_over_kamailio"), ".2f", "x"), "",
                      "per CPU second: " + fmt(cl.get("ratio_per_cpu_second"), ".2f", "x")]])

    g = s.get("generators")
    if g:
        L.append("## Load generators: sipshard-load and SIPp")
        L.append("")
        table(L, ["", "sipshard-load:", "SIPp uac + uas:", "ratio:"], [
            [f"CPU µs per call (UAC + UAS, {fmt(g.get('cost_rate'))} calls/s)", fmt(g.get("load_us_per_call"), ".1f"),
             fmt(g.get("sipp_us_per_call"), ".1f"), fmt(g.get("ratio_sipp_over_load_cpu_per_call"), ".1f", "x")],
            ["own ceiling, no proxy (calls/s)", fmt(g.get("load_self_max_clean")), fmt(g.get("sipp_direct_max_clean")),
             fmt(ratio(g.get("load_self_max_clean"), g.get("sipp_direct_max_clean")), ".1f", "x")],
            ["clean rate through sipshard, 1 shard (calls/s)", fmt(g.get("load_through_sipshard_max_clean")),
             fmt(g.get("sipp_through_sipshard_max_clean")), fmt(g.get("ratio_load_over_sipp_through_sipshard"), ".1f", "x")],
        ])
        L.append("SIPp's rates are a ladder of fixed rates (the highest one it kept with no failed call); "
                 "sipshard-load's come from its find-max search.")
        L.append("")

    mem = s.get("memory")
    if mem:
        L.append("## Memory per registered AOR")
        L.append("")
        table(L, ["sipshard", "AORs registered:", "resident before:", "resident after:", "bytes per AOR:",
                  "bytes per AOR per shard:"],
              [[f"{v['shards']} shard{'s' if v['shards'] > 1 else ''}", fmt(v["aors_registered"]),
                fmt(v["rss_before_bytes"] / 2**20, ".1f", " MiB"), fmt(v["rss_after_bytes"] / 2**20, ".1f", " MiB"),
                fmt(v["rss_bytes_per_aor"], ".1f"), f"**{fmt(v['rss_bytes_per_aor_per_shard'], '.1f')}**"]
               for v in (mem.get(k) for k in ("sipshard", "sipshard-2shards")) if v])
        lt = mem.get("location_table")
        if lt:
            L.append(f"The location table alone (`cargo bench --bench location_memory`, {fmt(lt.get('aors'))} AORs): "
                     f"{fmt(lt.get('heap_bytes_per_binding'), '.1f')} heap / {fmt(lt.get('rss_bytes_per_binding'), '.1f')} "
                     f"resident bytes per binding per shard.")
        L.append("")
    cl = s.get("cluster")
    if cl and cl.get("summary_rows"):
        L.append("## Cluster: nodes sharing the location table through Redis")
        L.append("")
        L.append(f"`scripts/bench.sh cluster` ({cl.get('mode')} run, Redis {cl.get('redis_version', '').split(' v=')[-1].split(' ')[0]}): "
                 "one shard per node, the nodes on CPU 0, the generators and redis-server on CPU 1. "
                 "Every figure of the run is in `bench-results/cluster.json`.")
        L.append("")
        table(L, ["figure", "measured:", "target:", "verdict"], cl["summary_rows"])
    L.append("Plots: [latency percentiles](img/latency-percentiles.svg), [rate over time](img/rate-over-time.svg), "
             "[CPU per message](img/cpu-per-message.svg). Method: [benchmarks.md](benchmarks.md).")
    L.append("")
    return "\n".join(L)


README_BEGIN = "<!-- bench-summary:begin (generated by scripts/bench.sh; do not edit) -->"
README_END = "<!-- bench-summary:end -->"


def readme_table(s):
    """The README's short table: sipshard next to Kamailio on the headline figures."""
    f = s.get("forward", {}).get("systems", {})
    c = s.get("calls", {})
    r = s.get("register", {}).get("find_max", {})
    m = s.get("memory", {}).get("sipshard", {})
    rows = []

    def row(what, a, b, spec, a_limited=False, b_limited=False):
        # A generator-limited rate is a lower bound, and so is a ratio with it on top.
        rows.append([what, ("≥ " if a_limited else "") + fmt(a, spec), ("≥ " if b_limited else "") + fmt(b, spec),
                     ("≥ " if a_limited and not b_limited else "") + fmt(ratio(a, b), ".2f", "x")])

    fs, fk = f.get("sipshard", {}), f.get("kamailio", {})
    if fs:
        row(f"CPU µs per forwarded message at {fmt(s['forward'].get('fixed_rate'))}/s",
            fs.get("cpu_us_per_msg"), fk.get("cpu_us_per_msg"), ".2f")
        row("forwarding saturation, messages/s", fs.get("saturation_msgs_per_s"),
            fk.get("saturation_msgs_per_s"), ",.0f")
    if c.get("sipshard"):
        ck = c.get("kamailio", {})
        row("highest clean call rate, calls/s", c["sipshard"].get("max_clean_rate"), ck.get("max_clean_rate"),
            ",.0f", c["sipshard"].get("generator_limited"), ck.get("generator_limited"))
    if r.get("sipshard"):
        rk = r.get("kamailio", {})
        row("highest clean Digest REGISTER rate, /s", r["sipshard"].get("max_clean_rate"), rk.get("max_clean_rate"),
            ",.0f", r["sipshard"].get("generator_limited"), rk.get("generator_limited"))
    if m:
        rows.append(["resident bytes per registered AOR per shard", fmt(m.get("rss_bytes_per_aor_per_shard"), ".0f"),
                     "-", "-"])
    if not rows:
        return None
    modes = {v.get("mode") for v in s.get("run", {}).get("sections", {}).values()}
    L = [README_BEGIN, ""]
    if "quick" in modes:
        L += ["**Quick run on a noisy machine, to be replaced by a full run.**", ""]
    table(L, ["one core each (1 shard, 1 worker)", "sipshard:", "Kamailio 5.6:", "ratio:"], rows)
    L += [f"Revision `{s['revision']}`, {s['generated'][:10]}, {s['machine']['cpus']} CPUs "
          f"({s['machine']['cpu_model']}); ≥: the generator's core ran out first. Method, every figure and plots: "
          "[docs/benchmarks.md](docs/benchmarks.md), [docs/benchmarks-results.md](docs/benchmarks-results.md).",
          "", README_END]
    return "\n".join(L)


TCP_BEGIN = "<!-- bench-tcp:begin (generated by scripts/bench.sh tcp; do not edit) -->"
TCP_END = "<!-- bench-tcp:end -->"


def tcp_rows(t):
    """Rows of the TCP table: sipshard over TCP, Kamailio over TCP, sipshard over UDP."""
    systems = t.get("systems", {})
    version = re.search(r"\d+\.\d+(\.\d+)?", t.get("kamailio_version") or "")
    rows = []
    for name, label in (("sipshard-tcp", "sipshard, TCP (1 shard)"),
                        ("kamailio-tcp", f"Kamailio {version.group(0) if version else ''}, TCP (1 worker)"),
                        ("sipshard", "sipshard, UDP (1 shard), same run")):
        r = systems.get(name)
        if not r:
            continue
        idle = r.get("idle_connections") or {}
        held = f" ({idle['held']:,} held)" if idle and idle.get("held") != idle.get("connections") else ""
        bound = "≥ " if r.get("flooder_limited") else ""
        rows.append([label, fmt(r.get("cpu_us_per_msg"), ".2f"), bound + fmt(r.get("saturation_msgs_per_s")),
                     fmt(r.get("cpu_us_per_msg_saturated"), ".2f"),
                     fmt(idle.get("pss_bytes_per_connection"), ",.0f") + held if idle else "-"])
    return rows


def tcp_markdown(t, rev):
    """docs/benchmarks-tcp.md: forwarding over persistent connections."""
    L = ["<!-- Generated by scripts/bench.sh tcp (scripts/bench-summary.py) from bench-results/tcp.json. "
         "Do not edit. -->", "", "# Forwarding over TCP", ""]
    m = t.get("machine", {})
    L += [f"Revision `{rev}`, {m.get('cpu_model')}; system under test on CPU {m.get('sut_cpu')}, "
          f"flooder on CPU {m.get('flood_cpu')}; load average before/after {m.get('loadavg_before')} / "
          f"{m.get('loadavg_after')}.", "",
          "The flooder (`udp-flood run --transport tcp`) sends INVITEs over 4 persistent connections; "
          "the proxy looks the callee up (registered with `;transport=tcp`) and forwards each over the one "
          "connection it opened to the sink. CPU is every thread of every process of the proxy; "
          "saturation is the most forwarded per second in any step. Idle connections: "
          "`udp-flood idle` opens 10,000 connections and measures the proxy's proportional set size "
          "(PSS, shared memory counted once) before and with them open.", ""]
    table(L, ["system", f"CPU µs/msg at {fmt(t.get('fixed_rate'))}/s:", "saturation msg/s:",
              "CPU µs/msg saturated:", "bytes per idle connection:"], tcp_rows(t))
    ratios = t.get("ratios", {})
    for pair, what in (("sipshard-tcp/kamailio-tcp", "sipshard over TCP / Kamailio over TCP"),
                       ("sipshard-tcp/sipshard", "sipshard over TCP / sipshard over UDP")):
        r = ratios.get(pair)
        if r:
            L.append(f"- {what}: saturation {fmt(r.get('saturation_msgs_per_s'), '.2f', 'x')}, "
                     f"CPU per message at the fixed rate {fmt(r.get('cpu_us_per_msg'), '.2f', 'x')}.")
    for key, v in t.get("targets", {}).items():
        if key.startswith("tcp_") or key.startswith("idle_"):
            L.append(f"- target `{key}`: {'met' if v.get('met') else 'NOT met'} ({v.get('ratio', v.get('pss_bytes'))})")
    L.append("")
    return "\n".join(L)


def tcp_readme(t):
    L = [TCP_BEGIN, ""]
    table(L, ["over TCP, one core each", f"CPU µs/msg at {fmt(t.get('fixed_rate'))}/s:", "saturation msg/s:",
              "CPU µs/msg saturated:", "bytes per idle connection:"], tcp_rows(t))
    L += ["≥: the flooder's core ran out first. Method and ratios: "
          "[docs/benchmarks-tcp.md](docs/benchmarks-tcp.md).", "", TCP_END]
    return "\n".join(L)


TLS_BEGIN = "<!-- bench-tls:begin (generated by scripts/bench.sh tls; do not edit) -->"
TLS_END = "<!-- bench-tls:end -->"


def tls_rows(t, h):
    """Rows of the TLS table: forwarding over TLS, handshakes, idle memory, per system."""
    systems = t.get("systems", {})
    version = re.search(r"\d+\.\d+(\.\d+)?", t.get("kamailio_version") or "")
    rows = []
    for name, hs, label in (("sipshard-tls", "sipshard", "sipshard, TLS (1 shard)"),
                            ("kamailio-tls", "kamailio",
                             f"Kamailio {version.group(0) if version else ''}, TLS (1 worker)")):
        r = systems.get(name) or {}
        k = (h.get("systems") or {}).get(hs) or {}
        full, resumed = k.get("full") or {}, k.get("resumed") or {}
        idle = r.get("idle_connections") or {}
        held = f" ({idle['held']:,} held)" if idle and idle.get("held") != idle.get("connections") else ""
        bound = "≥ " if r.get("flooder_limited") else ""
        gen = lambda x: "≥ " if (x.get("generator_cpu") or 0) >= 0.95 else ""
        rows.append([label, gen(full) + fmt(full.get("handshakes_per_s")),
                     fmt(full.get("sut_cpu_us_per_handshake"), ".0f"),
                     gen(resumed) + fmt(resumed.get("handshakes_per_s")), bound + fmt(r.get("saturation_msgs_per_s")),
                     fmt(idle.get("pss_bytes_per_connection"), ",.0f") + held if idle else "-"])
    return rows


TLS_HEADER = ["one core each", "full handshakes/s:", "CPU µs per full handshake:", "resumed handshakes/s:",
              "forwarding msg/s over TLS:", "bytes per idle TLS connection:"]


def tls_markdown(t, h, rev):
    """docs/benchmarks-tls.md: handshakes, forwarding over TLS, idle memory, the storm."""
    L = ["<!-- Generated by scripts/bench.sh tls (scripts/bench-summary.py) from bench-results/tls.json "
         "and tls-handshakes.json. Do not edit. -->", "", "# TLS", ""]
    m = t.get("machine", {})
    L += [f"Revision `{rev}`, {m.get('cpu_model')}; system under test on CPU {m.get('sut_cpu')}, "
          f"generator on CPU {m.get('flood_cpu')}; load average before/after {m.get('loadavg_before')} / "
          f"{m.get('loadavg_after')}. Certificates ECDSA P-256 (scripts/bench-tls-certs.sh).", "",
          f"Handshakes: `sipshard-load options --transport tls --tls-handshakes-only`, {h.get('connections')} "
          f"handshakes at a time for {h.get('duration_s')} s (connect, handshake, CRLF ping, pong, close, "
          "again); resumed with TLS 1.3 tickets, full with `--tls-no-resume`; CPU is every thread of every "
          "process of the proxy. Forwarding: `udp-flood run --transport tls`, INVITEs over 4 TLS "
          "connections, forwarded over the proxy's TLS connection to the sink; saturation is the most "
          "forwarded per second in any step. Idle: 10,000 TLS connections (handshakes done), the proxy's "
          "proportional set size before and with them open.", ""]
    table(L, ["system"] + TLS_HEADER[1:], tls_rows(t, h))
    ratios = h.get("ratios", {})
    fr = (t.get("ratios") or {}).get("sipshard-tls/kamailio-tls") or {}
    L.append(f"- sipshard / Kamailio: full handshakes {fmt(ratios.get('full'), '.2f', 'x')}, resumed "
             f"{fmt(ratios.get('resumed'), '.2f', 'x')}, forwarding saturation "
             f"{fmt(fr.get('saturation_msgs_per_s'), '.2f', 'x')}.")
    limited = h.get("generator_limited") or {}
    if limited.get("full") or limited.get("resumed"):
        L.append("- The handshake generator (one thread, verifying every server certificate) used its whole core "
                 "against sipshard: sipshard's handshake rates are the generator's, not sipshard's ceiling. "
                 "What one core of each proxy sustains, from the CPU each handshake costs it (1 s / CPU per "
                 f"handshake): full {fmt(ratios.get('full_capacity'), '.2f', 'x')}, resumed "
                 f"{fmt(ratios.get('resumed_capacity'), '.2f', 'x')} Kamailio's.")
    own = (t.get("systems") or {}).get("sipshard") or {}
    if own:
        L.append(f"- sipshard over UDP in the same run: {fmt(own.get('saturation_msgs_per_s'))} msg/s saturated.")
    for key, v in list(t.get("targets", {}).items()) + list(h.get("targets", {}).items()):
        if "tls" in key or "handshake" in key:
            extra = f", capacity {v['capacity_ratio']}" if v.get("capacity_ratio") else ""
            L.append(f"- target `{key}`: {'met' if v.get('met') else 'NOT met'} "
                     f"({v.get('ratio', v.get('pss_bytes'))}{extra})")
    st = h.get("storm") or {}
    if st:
        c, s_ = st.get("calm") or {}, st.get("storm") or {}
        L += ["", "## The handshake storm", "",
              f"sipshard (1 shard) forwarding {fmt(st.get('rate'))} INVITEs/s over UDP, alone and while "
              f"{fmt(st.get('connections'))} connections at a time do full handshakes flat out "
              "(`--tls-handshakes 32`, `--tls-handshake-backlog 1024`, the defaults):", ""]
        table(L, ["", "forwarded:", "latency p50 µs:", "p99 µs:", "p99.9 µs:"], [
            ["calm", fmt(c.get("ratio"), ".4f"), fmt(c.get("latency_p50_us")), fmt(c.get("latency_p99_us")),
             fmt(c.get("latency_p999_us"))],
            ["during the storm", fmt(s_.get("ratio"), ".4f"), fmt(s_.get("latency_p50_us")),
             fmt(s_.get("latency_p99_us")), fmt(s_.get("latency_p999_us"))]])
        L.append(f"Handshakes meanwhile: {fmt(st.get('handshakes_per_s'))}/s completed, "
                 f"{fmt(st.get('shed'))} connections shed by the gate.")
    L.append("")
    return "\n".join(L)


def tls_readme(t, h):
    L = [TLS_BEGIN, ""]
    table(L, ["over TLS"] + TLS_HEADER[1:], tls_rows(t, h))
    L += ["≥: the generator's core ran out first. Method, ratios and the handshake storm: "
          "[docs/benchmarks-tls.md](docs/benchmarks-tls.md).", "", TLS_END]
    return "\n".join(L)


SOAK_BEGIN = "<!-- soak:begin"
SOAK_END = "<!-- soak:end -->"


def kept_soak_block(page):
    """The soak section scripts/soak.sh put into the results page, to be carried over when
    the page is regenerated (a soak is an hour of its own, not part of bench.sh's run)."""
    try:
        text = open(page).read()
    except OSError:
        return ""
    if SOAK_BEGIN not in text or SOAK_END not in text:
        return ""
    block = SOAK_BEGIN + text.split(SOAK_BEGIN, 1)[1].split(SOAK_END, 1)[0] + SOAK_END
    return "\n" + block + "\n"


def splice_readme(path, block, begin=README_BEGIN, end=README_END):
    """Replace the generated block of the README (between the markers) with `block`."""
    text = open(path).read()
    if begin not in text or end not in text:
        print(f"{path}: no {begin!r} marker; README left alone")
        return
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(head + block + tail)
    print(f"README table: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="bench-results")
    ap.add_argument("--markdown", help="write the generated results page here")
    ap.add_argument("--readme", help="replace the generated results block of this README")
    ap.add_argument("--tcp-markdown", help="write the TCP results page (from tcp.json) here")
    ap.add_argument("--tcp-readme", help="replace the generated TCP block of this README")
    ap.add_argument("--tls-markdown", help="write the TLS results page (tls.json, tls-handshakes.json) here")
    ap.add_argument("--tls-readme", help="replace the generated TLS block of this README")
    a = ap.parse_args()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip() or "unknown"
    s = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "revision": rev,
        "machine": machine(),
        "run": load(os.path.join(a.results, "run.json")) or {},
    }
    for key, fn in (("forward", forward), ("calls", calls), ("register", register),
                    ("generators", lambda r: load(os.path.join(r, "generators", "loadgen.json"))),
                    ("memory", memory),
                    ("cluster", lambda r: load(os.path.join(r, "cluster.json")))):
        v = fn(a.results)
        if v:
            s[key] = v
    path = os.path.join(a.results, "summary.json")
    with open(path, "w") as f:
        json.dump(s, f, indent=2)
        f.write("\n")
    print(f"summary: {path}")
    if a.markdown:
        text = markdown(s) + kept_soak_block(a.markdown)
        with open(a.markdown, "w") as f:
            f.write(text)
        print(text)
    if a.readme:
        block = readme_table(s)
        if block:
            splice_readme(a.readme, block)
    t = load(os.path.join(a.results, "tcp.json"))
    if t and a.tcp_markdown:
        with open(a.tcp_markdown, "w") as f:
            f.write(tcp_markdown(t, rev))
        print(f"TCP results page: {a.tcp_markdown}")
    if t and a.tcp_readme:
        splice_readme(a.tcp_readme, tcp_readme(t), TCP_BEGIN, TCP_END)
    t, h = load(os.path.join(a.results, "tls.json")), load(os.path.join(a.results, "tls-handshakes.json"))
    if t and h and a.tls_markdown:
        with open(a.tls_markdown, "w") as f:
            f.write(tls_markdown(t, h, rev))
        print(f"TLS results page: {a.tls_markdown}")
    if t and h and a.tls_readme:
        splice_readme(a.tls_readme, tls_readme(t, h), TLS_BEGIN, TLS_END)


if __name__ == "__main__":
    main()
