"""Turn bench results (results/latest.json) into the side-by-side Markdown table.

Every figure is a median over repetitions with its range; ratios are medians of the ratios taken
inside each repetition. A figure none of whose windows passed the noise check says so instead of
showing a number. Usable on its own: python bench/report.py results/latest.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from figures import spread

__all__ = ["write_report", "TARGETS"]

NAMES = {"xes": "XES", "peerjs": "PeerJS", "bare": "bare relay", "xes-asyncio": "XES on asyncio",
         "xes-uvloop": "XES on uvloop", "xes-fastnet": "XES, aiofastnet",
         "xes-uvloop-fastnet": "XES on uvloop + aiofastnet", "bare-uvloop": "bare relay on uvloop",
         "xes-before": "XES before (BENCH_XES_BEFORE_CMD)",
         "xes-cluster2": "XES, 2 nodes + Redis (cross-node pairs)",
         "xes-workers2": "XES --workers 2 + Redis (both cores)"}
MAIN = ("xes", "peerjs", "bare")

# figure key -> (ratio, bound, how the issue words it)
TARGETS: dict[str, tuple[str, float, str]] = {
    "us_per_msg_25000": ("bare", 1.0, "≤ 1.0× bare relay at equal load"),
    "us_per_msg_10000": ("bare", 1.0, "≤ 1.0× bare relay at equal load"),
    "us_per_setup": ("peerjs", 0.5, "≤ 0.5× PeerJS"),
    "idle_kib_10000": ("peerjs", 1.0, "≤ PeerJS"),
    "idle_kib_100000": ("peerjs", 1.0, "≤ PeerJS"),
    "browser_direct_ms": ("bare", 1.1, "≤ 1.1× bare page"),
    "browser_relayed_ms": ("bare", 1.1, "≤ 1.1× bare page"),
}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def cell(s: dict[str, Any] | None, digits: int, suffix: str = "") -> str:
    """median (min–max), with how many repetitions passed the noise check when not all did."""
    if not s:
        return "–"
    if s.get("n", 0) == 0:
        return "no quiet window" if s.get("disturbed") else "–"
    text = f"{fmt(s['median'], digits)}{suffix}"
    if s["n"] > 1:
        text += f" ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"
    if s.get("disturbed"):
        text += f" [{s['n']}/{s['of']} quiet]"
    elif s["n"] < s["of"]:
        text += f" [{s['n']}/{s['of']} measured]"
    return text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def verdict(fig: dict[str, Any], key: str, kind: str = "xes") -> tuple[str, str]:
    target = TARGETS.get(key)
    if target is None:
        return "", ""
    over, bound, words = target
    r = fig.get("ratios", {}).get(f"{kind}/{over}")
    if not r or not r.get("n"):
        return words, "not measured"
    met = r["median"] <= bound
    text = "yes" if met else "**no**"
    if met and r["max"] > bound:
        text += f" (median; up to {r['max']:.2f}×)"
    if r["n"] < r["of"]:
        text += f" ({r['n']} of {r['of']} repetitions quiet)"
    return words, text


def main_table(figs: dict[str, Any], keys: list[str]) -> list[str]:
    rows = []
    for key in keys:
        fig = figs[key]
        d = fig["digits"]
        summ = fig.get("summary", {})
        ratios = fig.get("ratios", {})
        words, met = verdict(fig, key)
        rows.append([f"{fig['label']} ({fig['unit']})"]
                    + [cell(summ.get(k), d) for k in MAIN]
                    + [cell(ratios.get(f"xes/{o}"), 2, "×") for o in ("peerjs", "bare")]
                    + [words, met])
    return table(["figure", "XES", "PeerJS", "bare relay", "XES/PeerJS", "XES/bare", "target",
                  "met"], rows)


def variants_table(figs: dict[str, Any], keys: list[str]) -> list[str]:
    kinds = sorted({k for key in keys for k in figs[key].get("summary", {}) if k not in MAIN})
    if not kinds:
        return []
    rows = []
    for key in keys:
        fig = figs[key]
        summ, ratios = fig.get("summary", {}), fig.get("ratios", {})
        if not any(k in summ for k in kinds):
            continue
        for kind in kinds:
            if kind not in summ:
                continue
            rows.append([f"{fig['label']} ({fig['unit']})", NAMES.get(kind, kind),
                         cell(summ[kind], fig["digits"]),
                         cell(ratios.get(f"{kind}/peerjs"), 2, "×"),
                         cell(ratios.get(f"{kind}/bare"), 2, "×"),
                         cell(ratios.get(f"{kind}/xes"), 2, "×")])
    if not rows:
        return []
    return ["", "### Experiments and clusters (not what XES ships unless the table above says so)",
            ""] + table(["figure", "server", "value", "/PeerJS", "/bare relay", "/XES"], rows)


# The bound for a cluster: latency added by crossing nodes, at 10,000 msg/s.
CROSS_NODE_P99_BOUND_US = 1000.0


def cluster_section(figs: dict[str, Any]) -> list[str]:
    """Redis's own CPU and memory, and the p99 that crossing nodes adds (per repetition: the
    2-node cluster's p99 minus one process's, measured in the same minute)."""
    keys = [k for k in figs if figs[k].get("section") == "cluster"]
    p99 = figs.get("p99_10000", {}).get("values", {})
    if not keys and "xes-cluster2" not in p99:
        return []
    out = ["", "## Cluster (Redis): what the nodes cost Redis, and what crossing nodes adds", ""]
    rows = []
    for key in keys:
        fig = figs[key]
        for kind, summ in fig.get("summary", {}).items():
            rows.append([f"{fig['label']} ({fig['unit']})", NAMES.get(kind, kind),
                         cell(summ, fig["digits"])])
    if "xes-cluster2" in p99 and "xes" in p99:
        added = [c - x if c is not None and x is not None else None
                 for c, x in zip(p99["xes-cluster2"], p99["xes"], strict=True)]
        summ = spread(added)
        met = ("not measured" if not summ["n"] else
               "yes" if summ["median"] < CROSS_NODE_P99_BOUND_US else "**no**")
        rows.append(["relay: p99 added by crossing nodes at 10,000 msg/s (µs; target < 1,000; "
                     f"met: {met})", NAMES["xes-cluster2"], cell(summ, 0)])
    return out + table(["figure", "server", "value"], rows)


def timeline(b: dict[str, Any]) -> list[str]:
    steps = b.get("timeline_steps", [])
    tl = b.get("timeline", {})
    if not steps or not tl:
        return []
    out = ["", "### Where the time goes: per-step timeline (median ms after the newcomer's click, "
           "one clock)", ""]
    for path in ("direct", "relayed"):
        per = tl.get(path, {})
        if not per:
            continue
        kinds = [k for k in ("xes", "bare", "xes-before") if k in per]
        rows = []
        for step in steps:
            vals = [per[k].get(step) for k in kinds]
            x, bare = per.get("xes", {}).get(step), per.get("bare", {}).get(step)
            delta = x - bare if isinstance(x, (int, float)) and isinstance(bare, (int, float)) else None
            rows.append([step] + [fmt(v, 0) for v in vals] + [fmt(delta, 0)])
        out += [f"**{path}**", ""] + table(
            ["step"] + [NAMES.get(k, k) + (" page" if k != "xes-before" else "") for k in kinds]
            + ["XES − bare"], rows)
        out.append("")
    counts = b.get("page_work", {})
    if counts:
        kinds = [k for k in ("xes", "bare", "xes-before") if k in counts]
        rows = [[k] + [fmt(counts[s].get(k), 1) for s in kinds]
                for k in sorted({k for v in counts.values() for k in v})]
        out += ["Page work during one direct call (median per page, same instrumentation):", ""]
        out += table(["what"] + [NAMES.get(k, k) for k in kinds], rows)
    return out


def mesh_section(mesh: dict[str, Any] | None) -> list[str]:
    """The full room (bench/mesh_bench.py): one repetition per page, XES's and the bare one."""
    if not mesh:
        return []
    out = ["", "## Browser in a full room (bench/mesh_bench.py)", ""]
    if "error" in mesh:
        return out + [f"Not measured: {mesh['error']}"]
    meshes = mesh.get("meshes", {})
    kinds = [k for k in ("xes", "bare", "xes-before") if k in meshes]
    people = int(mesh.get("people", 0))

    def value(kind: str, key: str, scale: float = 1.0, digits: int = 2) -> str:
        m = meshes[kind]
        if not m.get("ok"):
            return f"failed: {m.get('error', '?')}"
        v = m.get(key)
        return fmt(v * scale, digits) if isinstance(v, (int, float)) else "–"

    rows = []
    for n in range(1, people + 1):
        cells = []
        for kind in kinds:
            settle = meshes[kind].get("settle_s", [])
            cells.append(fmt(settle[n - 1], 1) if len(settle) >= n else "–")
        rows.append([f"person {n} joins: everyone hears everyone after (s)"] + cells)
    rows += [
        ["Chromium CPU in the full room (cores)"] + [value(k, "chromium_cores") for k in kinds],
        ["Chromium CPU per link (ms per s)"]
        + [value(k, "chromium_ms_per_s_per_link", digits=1) for k in kinds],
        ["renderers, all pages (cores)"] + [value(k, "renderer_cores") for k in kinds],
        ["pages' main threads, all pages (cores)"]
        + [value(k, "main_thread_cores", digits=3) for k in kinds],
        ["quiet window"] + [str(meshes[k].get("quiet", "–")) for k in kinds],
    ]
    out += table(["figure"] + [NAMES.get(k, k) + (" page" if k != "xes-before" else "")
                               for k in kinds], rows)
    if mesh.get("method"):
        out += ["", str(mesh["method"])]
    return out


def write_report(results: dict[str, Any], md_path: Path, png_path: Path | None = None) -> None:
    r = results
    figs: dict[str, Any] = r.get("figures", {})
    lines = ["# XES vs PeerJS vs a bare relay: benchmarks", ""]
    for run in r.get("runs", []):
        m = run.get("machine", {})
        lines += [
            f"- Run {run.get('started')} → {run.get('finished')} ({'quick' if run.get('quick') else 'full'}"
            f" mode), scenarios {', '.join(run.get('scenarios', []))}, servers "
            f"{', '.join(run.get('servers', []))}. Machine: {m.get('cpu')}, {m.get('cores')} cores, "
            f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}, Python {m.get('python')}, node "
            f"{m.get('node')}. Load average at start {m.get('load_average_at_start')}, at end "
            f"{run.get('load_average_at_end')}. Noise limits per window: {run.get('noise_limits')} "
            "(cores)."]
        lines += [f"  Note: {n}" for n in run.get("notes", [])]
    if r.get("runs"):
        lines += ["", f"Set-up: {json.dumps(r['runs'][-1].get('setup', {}), ensure_ascii=False)}"]
    lines += ["", "Each figure: median over the repetitions that passed the noise check, (range); "
              "ratios are taken inside each repetition, then their median (range) is shown. "
              "`[2/3 quiet]`: only that many repetitions got a quiet window; `no quiet window`: "
              "none did, so there is no figure.", ""]
    sections = [("relay", "Relay"), ("setup", "Call set-ups"), ("idle", "Idle connections"),
                ("browser", "Browser: Join → first remote tone")]
    order = [k for s, _ in sections for k in figs if figs[k].get("section") == s]
    lines += ["## Side by side", ""] + main_table(figs, order)
    lines += variants_table(figs, order)
    lines += cluster_section(figs)
    notes = [f"- {figs[k]['label']}: {n}" for k in order for n in figs[k].get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + notes

    idle = r.get("idle", {})
    for n, per in idle.items():
        lim = per.get("limits", {})
        if lim and not lim.get("ok"):
            lines += ["", f"**{int(n):,} idle clients**: not possible on this machine. "
                      f"{lim.get('why')}. Ephemeral ports are not the limit: "
                      f"{lim['ephemeral_ports']['have']:,} with {lim['ephemeral_ports']['source_addresses']}"
                      f" source addresses; nor memory ({lim['memory']['available_kib'] // 1024:,} MiB "
                      "available). Measured at the largest count the limit allows instead."]

    b = r.get("browser")
    if b:
        lines += ["", "## Browser join → first audio", ""]
        if "error" in b:
            lines.append(f"Not measured: {b['error']}")
        else:
            lines += timeline(b)
            if b.get("method"):
                lines += ["", str(b["method"])]

    lines += mesh_section(r.get("mesh"))

    mm = r.get("matchmaking")
    if mm:
        lines += ["", "## Matchmaking (XES only, bench/matchmaking.py)", ""]
        flat = {k: v for k, v in mm.items() if not isinstance(v, (dict, list))}
        lines += table(["field", "value"], [[k, fmt(v, 2)] for k, v in flat.items()])
        if isinstance(mm.get("noise"), dict):
            lines += ["", f"Noise during the run: {mm['noise']}"]

    prof = r.get("profile")
    if isinstance(prof, dict) and prof.get("top_self"):
        lines += ["", "## Profile of the XES server during full-speed relay (py-spy)", "",
                  f"{prof.get('samples')} samples. Self time (where the CPU is):", ""]
        lines += table(["% self", "function"],
                       [[fmt(p, 1), f"`{f}`"] for f, p in prof["top_self"][:15]])
        lines += ["", "Inclusive time:", ""]
        lines += table(["% incl.", "function"],
                       [[fmt(p, 1), f"`{f}`"] for f, p in prof["top_inclusive"][:15]])

    discarded = sum(1 for fig in figs.values() for per in fig.get("noise", {}).values()
                    for windows in per if windows for w in windows if not w.get("quiet", True))
    kept = sum(1 for fig in figs.values() for per in fig.get("noise", {}).values()
               for windows in per if windows for w in windows if w.get("quiet"))
    lines += ["", f"Noise check: {kept} quiet and {discarded} disturbed window readings (a window "
              "feeds several figures and is counted once for each; every reading is in "
              "latest.json under `figures.*.noise`)."]
    md_path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results/latest.json")
    data = json.loads(src.read_text())
    write_report(data, src.with_suffix(".md"))
