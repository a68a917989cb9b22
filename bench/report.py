"""Turn bench results (results/latest.json) into a Markdown table and a latency plot.

Usable on its own to redraw from a saved file: python bench/report.py results/latest.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

NAMES = {"xes": "XES", "peerjs": "PeerJS", "bare": "bare relay", "xes-uvloop": "XES on uvloop"}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    try:
        if not b or math.isnan(a) or math.isnan(b):
            return "–"
        return f"{a / b:.2f}×"
    except TypeError:
        return "–"


def get(d: dict[str, Any], *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return float("nan")
        cur = cur[key]
    return cur


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def targets(r: dict[str, Any]) -> list[str]:
    """The brief's targets: reported, not asserted."""
    t = r.get("traffic", {})
    idle = r.get("idle", {})
    rows: list[list[str]] = []

    def row(what: str, x: Any, p: Any, unit: str, target: str, met: bool | None,
            digits: int = 1) -> None:
        verdict = "–" if met is None else ("yes" if met else "**no**")
        rows.append([what, f"{fmt(x, digits)} {unit}", f"{fmt(p, digits)} {unit}", ratio(x, p),
                     target, verdict])

    def ok(cond: bool) -> bool | None:
        return None if cond is None else bool(cond)

    x, p = get(t, "xes", "relay", "us_per_msg"), get(t, "peerjs", "relay", "us_per_msg")
    row("relay: server CPU per message", x, p, "µs", "≤ 0.7× PeerJS",
        None if math.isnan(x) or math.isnan(p) else ok(x <= 0.7 * p))
    x, p = get(t, "xes", "setup", "per_s"), get(t, "peerjs", "setup", "per_s")
    row("call set-ups per second", x, p, "/s", "≥ 1.5× PeerJS",
        None if math.isnan(x) or math.isnan(p) else ok(x >= 1.5 * p), 0)
    x, p = get(t, "xes", "setup", "us_per_setup"), get(t, "peerjs", "setup", "us_per_setup")
    row("server CPU per call set-up", x, p, "µs", "(≤ 1/1.5 PeerJS on one core)",
        None if math.isnan(x) or math.isnan(p) else ok(x * 1.5 <= p), 0)
    x, p = get(t, "xes", "latency", "p99_us"), get(t, "peerjs", "latency", "p99_us")
    rate = r.get("plan", {}).get("latency_rate", 10000)
    row(f"p99 latency at {fmt(float(rate), 0)} msg/s", x, p, "µs", "≤ PeerJS",
        None if math.isnan(x) or math.isnan(p) else ok(x <= p), 0)
    big = max((int(n) for n in idle), default=0)
    if big:
        x = get(idle, str(big), "xes", "rss_per_conn_bytes") / 1024
        p = get(idle, str(big), "peerjs", "rss_per_conn_bytes") / 1024
        n_ok = get(idle, str(big), "xes", "connected")
        row(f"RSS per idle connection, {big:,} clients", x, p, "KiB",
            "≥ 10,000 clients at ≤ 10 KB",
            None if math.isnan(x) else ok(x * 1024 <= 10_000 and n_ok >= 10_000))
    b = r.get("browser", {})
    for path in ("direct", "relayed"):
        x = get(b, "xes", path, "median_ms")
        bare = get(b, "bare", path, "median_ms")
        if not math.isnan(x):
            rows.append([f"browser join→first audio, {path} (median)", f"{fmt(x, 0)} ms",
                         f"bare relay {fmt(bare, 0)} ms", ratio(x, bare), "≤ 1.15× bare relay",
                         "yes" if x <= 1.15 * bare else "**no**"])
    return table(["target", "XES", "PeerJS", "XES/PeerJS", "target", "met"], rows)


def write_report(results: dict[str, Any], md_path: Path, png_path: Path) -> None:
    r = results
    m = r.get("machine", {})
    lines = [
        "# XES vs PeerJS: signalling benchmarks",
        "",
        f"Run {r.get('started')} → {r.get('finished')}, {'quick' if r.get('quick') else 'full'} "
        f"mode. Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, "
        f"Linux {m.get('kernel')}, Python {m.get('python')}, node {m.get('node')}.",
        f"Load average at start {m.get('load_average_at_start')}, at end "
        f"{r.get('load_average_at_end')}: other work shared the machine, so read the CPU-per-"
        "operation figures first; throughput and latency suffer most from a busy neighbour.",
        "",
        f"Set-up: {json.dumps(r.get('setup', {}), ensure_ascii=False)}",
        "",
    ]
    lines += [f"Note: {n}" for n in r.get("notes", [])]
    lines += ["", "## Targets (reported, not asserted)", ""] + targets(r)

    servers = [k for k in NAMES if k in r.get("traffic", {})
               or any(k in v for v in r.get("idle", {}).values())]
    head = ["metric"] + [NAMES[k] for k in servers] + ["XES/PeerJS"]

    for n, per in r.get("idle", {}).items():
        lines += ["", f"## 1. Connection capacity: {int(n):,} idle clients", ""]
        rows = []
        for key, label, scale, digits in (
                ("connected", "connected", 1, 0), ("connect_per_s", "connects per second", 1, 0),
                ("rss_per_conn_bytes", "server RSS per connection (KiB)", 1 / 1024, 1),
                ("rss_kib", "server RSS with all connected (MiB)", 1 / 1024, 1),
                ("idle_cpu_pct", "server CPU while idle (% of a core)", 1, 2),
                ("idle_disconnects", "dropped while idle", 1, 0)):
            vals = [get(per, k, key) for k in servers]
            vals = [v * scale if isinstance(v, (int, float)) else v for v in vals]
            rows.append([label] + [fmt(v, digits) for v in vals]
                        + [ratio(get(per, "xes", key), get(per, "peerjs", key))])
        lines += table(head, rows)
        lines += ["", "XES clients are joined in rooms of two; PeerJS clients send HEARTBEAT "
                  "every 5 s as its client library does."]

    t = r.get("traffic", {})
    if t:
        plan = r.get("plan", {})
        lines += ["", f"## 2. Relay cost: {plan.get('pairs', 0):,} pairs, one message in flight "
                  "each, signalling-sized (1 SDP of 1-3 KB per 10 candidates of ~230 B)", ""]
        rows = []
        for sect, key, label, digits in (
                ("relay", "per_s", "messages per second", 0),
                ("relay", "us_per_msg", "server CPU per message (µs)", 1),
                ("relay", "server_cpu_pct", "server CPU (% of a core)", 0),
                ("relay", "gen_cpu_pct", "load generator CPU (% of a core)", 0),
                ("latency", "p50_us", f"p50 at {fmt(plan.get('latency_rate', 0), 0)} msg/s (µs)",
                 0),
                ("latency", "p99_us", f"p99 at {fmt(plan.get('latency_rate', 0), 0)} msg/s (µs)",
                 0),
                ("latency", "per_s", "delivered at that offered rate (/s)", 0),
                ("latency", "us_per_msg", "server CPU per message at that rate (µs)", 1)):
            rows.append([label] + [fmt(get(t, k, sect, key), digits) for k in servers]
                        + [ratio(get(t, "xes", sect, key), get(t, "peerjs", sect, key))])
        lines += table(head, rows)
        lines += ["", f"Medians of {plan.get('runs')} windows of {plan.get('window_s')} s, "
                  "servers interleaved round by round."]

        lines += ["", f"## 3. Call set-ups: {plan.get('setup_pairs', 0)} pairs, each doing "
                  "offer, answer, 10+10 candidates and leave, back to back", ""]
        rows = []
        for key, label, digits in (("per_s", "set-ups per second", 0),
                                   ("us_per_setup", "server CPU per set-up (µs)", 0),
                                   ("server_cpu_pct", "server CPU (% of a core)", 0),
                                   ("gen_cpu_pct", "load generator CPU (% of a core)", 0),
                                   ("p50_ms", "p50 set-up time (ms)", 1),
                                   ("p99_ms", "p99 set-up time (ms)", 1)):
            rows.append([label] + [fmt(get(t, k, "setup", key), digits) for k in servers]
                        + [ratio(get(t, "xes", "setup", key), get(t, "peerjs", "setup", key))])
        lines += table(head, rows)
        lines += ["", "XES: join, join, 22 signals, leave, leave (26 client messages, 28 from "
                  "the server); PeerJS has no rooms: 22 signals and a LEAVE (23 each way)."]

        lines += ["", "### Latency against offered load", "",
                  f"![latency]({png_path.name})", ""]
        rows = []
        for k in servers:
            for pt in t.get(k, {}).get("sweep", []):
                rows.append([NAMES[k], fmt(pt.get("offered_per_s"), 0), fmt(pt.get("per_s"), 0),
                             fmt(pt.get("p50_us"), 0), fmt(pt.get("p99_us"), 0),
                             fmt(pt.get("us_per_msg"), 1)])
        lines += table(["server", "offered /s", "delivered /s", "p50 µs", "p99 µs",
                        "server µs/msg"], rows)

    mm = r.get("matchmaking")
    if mm:
        lines += ["", "## 4. Matchmaking (XES only, bench/matchmaking.py)", ""]
        flat = {k: v for k, v in mm.items() if not isinstance(v, (dict, list))}
        lines += table(["field", "value"], [[k, fmt(v, 2)] for k, v in flat.items()])

    b = r.get("browser")
    if b:
        lines += ["", "## 5. Browser join→first audio (real Chromium, loopback, tone detection)",
                  ""]
        if "error" in b or "skipped" in b:
            lines.append(f"Not measured: {b.get('error') or b.get('skipped')}")
        else:
            rows = []
            for path in ("direct", "relayed"):
                for k in ("xes", "bare"):
                    s = b.get(k, {}).get(path)
                    if s:
                        rows.append([NAMES[k], path, f"{s.get('ok')}/{s.get('calls')}",
                                     fmt(s.get("median_ms"), 0), fmt(s.get("p90_ms"), 0)])
            lines += table(["server", "path", "calls ok", "median ms", "p90 ms"], rows)
            if b.get("method"):
                lines += ["", str(b["method"])]

    prof = get(t, "xes", "profile")
    if isinstance(prof, dict) and prof.get("top_self"):
        lines += ["", "## Profile of the XES server during full-speed relay (py-spy)", "",
                  f"{prof.get('samples')} samples. Self time (where the CPU is):", ""]
        lines += table(["% self", "function"],
                       [[fmt(p, 1), f"`{f}`"] for f, p in prof["top_self"][:15]])
        lines += ["", "Inclusive time:", ""]
        lines += table(["% incl.", "function"],
                       [[fmt(p, 1), f"`{f}`"] for f, p in prof["top_inclusive"][:15]])

    md_path.write_text("\n".join(lines) + "\n")
    plot(r, png_path)


def plot(r: dict[str, Any], png_path: Path) -> None:
    t = r.get("traffic", {})
    if not any(t.get(k, {}).get("sweep") for k in t):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {"xes": "tab:blue", "peerjs": "tab:orange", "bare": "tab:gray",
               "xes-uvloop": "tab:green"}
    for k, res in t.items():
        pts = res.get("sweep", [])
        if not pts:
            continue
        xs = [p["offered_per_s"] for p in pts]
        ax.plot(xs, [p["p50_us"] / 1000 for p in pts], "o--", color=colours.get(k),
                label=f"{NAMES.get(k, k)} p50")
        ax.plot(xs, [p["p99_us"] / 1000 for p in pts], "s-", color=colours.get(k),
                label=f"{NAMES.get(k, k)} p99")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (signalling messages per second)")
    ax.set_ylabel("client-to-client latency (ms, log scale)")
    ax.set_title("Relay latency against offered load (server pinned to one core)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results/latest.json")
    data = json.loads(src.read_text())
    write_report(data, src.with_suffix(".md"), src.parent / "latency.png")
