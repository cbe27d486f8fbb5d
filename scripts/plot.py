#!/usr/bin/env python3
"""Plots of a scripts/bench.sh run, from the files it left in bench-results.

    scripts/plot.py [bench-results] [docs/img] [svg|png]

Writes (SVG by default):
  latency-percentiles.svg  INVITE->200 percentile curves per proxy at 50 % and 90 % of its
                           highest clean call rate (calls/<system>-<pct>/invite_to_200.hgrm)
  rate-over-time.svg       calls per second, target and achieved, second by second
                           (calls/<system>-<pct>.csv)
  cpu-per-message.svg      CPU microseconds per forwarded message, at the fixed rate and
                           saturated, per system (forward.json)
  tcp-cpu-per-message.svg  the same over TCP, sipshard's UDP row from the same run (tcp.json)
  tls-cpu-per-message.svg  the same over TLS (tls.json)
  tls-handshakes.svg       CPU microseconds per full and per resumed TLS handshake, sipshard and
                           Kamailio (tls-handshakes.json)
A plot whose inputs are missing is skipped. Needs matplotlib.
"""

import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYSTEMS = ("sipshard", "sipshard-2shards", "kamailio")
COLORS = {"sipshard": "tab:blue", "sipshard-2shards": "tab:cyan", "kamailio": "tab:orange",
          "udp-floor": "tab:gray", "floor": "tab:gray", "sipshard-nocoalesce": "tab:purple",
          "sipshard-tcp": "tab:blue", "kamailio-tcp": "tab:orange",
          "sipshard-tls": "tab:blue", "kamailio-tls": "tab:orange"}
STYLE = {50: "-", 90: "--"}


def read_hgrm(path):
    """(latency ms, 1/(1-percentile)) pairs of an HdrHistogram percentile distribution."""
    xs, ys = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4 or line.lstrip().startswith("#") or parts[0] == "Value":
                continue
            try:
                value, inv = float(parts[0]), float(parts[3])
            except ValueError:
                continue
            xs.append(inv)
            ys.append(value)
    return xs, ys


FORMAT = "svg"
# Appended to every title when a section of the run was a --quick one.
NOTE = ""


def finish(fig, ax, out, name, title, grid="both"):
    """Title, grid, legend; write `out/name` (in FORMAT); return its path."""
    ax.set_title(title + NOTE, fontsize=11)
    ax.grid(True, which=grid, alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out, os.path.splitext(name)[0] + "." + FORMAT)
    fig.tight_layout()
    # No creation date in the file: a rerun with the same data writes the same bytes.
    fig.savefig(path, metadata={"Date": None} if FORMAT == "svg" else None)
    plt.close(fig)
    return path


def latency(res, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for name in SYSTEMS:
        for pct in (50, 90):
            p = os.path.join(res, "calls", f"{name}-{pct}", "invite_to_200.hgrm")
            if not os.path.exists(p):
                continue
            xs, ys = read_hgrm(p)
            if not xs:
                continue
            rate = ""
            run = os.path.join(res, "calls", f"{name}-{pct}.json")
            if os.path.exists(run):
                rate = f", {json.load(open(run)).get('target_rate', 0):,.0f}/s"
            ax.plot(xs, ys, STYLE[pct], color=COLORS.get(name), label=f"{name} at {pct} %{rate}")
            n += 1
    if not n:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0 %", "50 %", "90 %", "99 %", "99.9 %", "99.99 %"])
    ax.set_xlim(1, 10000)
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("INVITE → 200 (ms)")
    return finish(fig, ax, out, "latency-percentiles.svg",
                  "Call setup latency at 50 % and 90 % of each proxy's highest clean rate")


def rate(res, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for name in SYSTEMS:
        for pct in (50, 90):
            p = os.path.join(res, "calls", f"{name}-{pct}.csv")
            if not os.path.exists(p):
                continue
            with open(p) as f:
                rows = list(csv.DictReader(f))
            # The schedule only: the seconds after it are the drain of calls in flight.
            run = os.path.join(res, "calls", f"{name}-{pct}.json")
            if os.path.exists(run):
                duration = json.load(open(run)).get("duration_s") or 0
                rows = [r for r in rows if float(r["second"]) <= duration] or rows
            if not rows:
                continue
            t = [float(r["second"]) for r in rows]
            ax.plot(t, [float(r["achieved_rate"]) for r in rows], STYLE[pct], color=COLORS.get(name),
                    label=f"{name} at {pct} %", marker=".")
            ax.plot(t, [float(r["target_rate"]) for r in rows], ":", color=COLORS.get(name), alpha=0.5)
            n += 1
    if not n:
        plt.close(fig)
        return None
    ax.set_xlabel("second of the run")
    ax.set_ylabel("calls started per second (dotted: schedule)")
    ax.set_ylim(bottom=0)
    return finish(fig, ax, out, "rate-over-time.svg", "Call rate over time", grid="major")


def cpu(res, out):
    return cpu_bars(res, out, "forward.json", "cpu-per-message.svg",
                    "Forwarding cost (system under test on one CPU; lower is better)")


def tcp(res, out):
    return cpu_bars(res, out, "tcp.json", "tcp-cpu-per-message.svg",
                    "Forwarding cost over TCP, UDP row from the same run (one CPU; lower is better)")


def tls(res, out):
    return cpu_bars(res, out, "tls.json", "tls-cpu-per-message.svg",
                    "Forwarding cost over TLS, UDP row from the same run (one CPU; lower is better)")


def tls_handshakes(res, out):
    """CPU per full and per resumed handshake, per proxy (tls-handshakes.json)."""
    p = os.path.join(res, "tls-handshakes.json")
    if not os.path.exists(p):
        return None
    systems = json.load(open(p))["systems"]
    names = list(systems)
    fig, ax = plt.subplots(figsize=(7, 5))
    w = 0.38
    for i, (kind, alpha, hatch) in enumerate((("full", 1.0, None), ("resumed", 0.55, "//"))):
        vals = [(systems[k].get(kind) or {}).get("sut_cpu_us_per_handshake") or 0 for k in names]
        bars = ax.bar([x + (i - 0.5) * w for x in range(len(names))], vals, w, label=kind, alpha=alpha,
                      hatch=hatch, color=[COLORS.get(k, "tab:green") for k in names])
        for b in bars:
            ax.annotate(f"{b.get_height():.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(range(len(names))))
    ax.set_xticklabels(names)
    ax.set_ylabel("CPU µs per TLS handshake (ECDSA P-256)")
    return finish(fig, ax, out, "tls-handshakes.svg", "TLS handshake cost (one CPU; lower is better)",
                  grid="major")


def cpu_bars(res, out, source, name, title):
    """CPU per forwarded message at the fixed rate and saturated, per system of `source`."""
    p = os.path.join(res, source)
    if not os.path.exists(p):
        return None
    f = json.load(open(p))
    names = list(f["systems"])
    fixed = [f["systems"][k].get("cpu_us_per_msg") or 0 for k in names]
    sat = [f["systems"][k].get("cpu_us_per_msg_saturated") or 0 for k in names]
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = range(len(names))
    w = 0.38
    b1 = ax.bar([x - w / 2 for x in xs], fixed, w, label=f"at {f.get('fixed_rate', 0):,}/s offered",
                color=[COLORS.get(k, "tab:green") for k in names])
    b2 = ax.bar([x + w / 2 for x in xs], sat, w, label="saturated", color=[COLORS.get(k, "tab:green") for k in names],
                alpha=0.55, hatch="//")
    for bars in (b1, b2):
        for b in bars:
            ax.annotate(f"{b.get_height():.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel("CPU µs per forwarded message")
    return finish(fig, ax, out, name, title, grid="major")


def main():
    global FORMAT, NOTE
    res = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/img"
    FORMAT = sys.argv[3] if len(sys.argv) > 3 else "svg"
    run = os.path.join(res, "run.json")
    if os.path.exists(run):
        modes = {v.get("mode") for v in json.load(open(run)).get("sections", {}).values()}
        NOTE = "\n(quick run, noisy machine: to be replaced)" if "quick" in modes else ""
    os.makedirs(out, exist_ok=True)
    # SVGs that differ only by their generation time would change on every run.
    plt.rcParams["svg.hashsalt"] = "sipshard"
    matplotlib.rcParams["svg.fonttype"] = "none"
    for fn in (latency, rate, cpu, tcp, tls, tls_handshakes):
        path = fn(res, out)
        print(f"plot: {path}" if path else f"plot: {fn.__name__} skipped (no input)")


if __name__ == "__main__":
    main()
