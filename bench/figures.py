"""Figures over repetitions: each value per server and repetition, ratios within a repetition.

A value is None where no quiet window was had (the noise check, bench/noise.py) or where the
measurement failed; `status` says which. Summaries are the median and range of what is left.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["Figures", "spread"]


def spread(values: list[float | None], status: list[str] | None = None) -> dict[str, Any]:
    """Median and range of the values that passed the noise check (None: no value)."""
    good = [v for v in values if v is not None]
    out: dict[str, Any] = {"n": len(good), "of": len(values)}
    if status is not None:
        out["disturbed"] = status.count("disturbed")
    if good:
        out.update(median=statistics.median(good), min=min(good), max=max(good))
    return out


class Figures:
    """Every reported figure: its value per server and repetition (None where no quiet window
    was had), and the noise of each window. Ratios are formed per repetition, then summarised."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = data if data is not None else {}

    def define(self, key: str, label: str, unit: str, reps: int, digits: int = 1,
               section: str = "") -> None:
        if key not in self.data:
            self.data[key] = {"label": label, "unit": unit, "digits": digits, "section": section,
                              "reps": reps, "values": {}, "noise": {}, "notes": []}

    def put(self, key: str, server: str, rep: int, value: float | None,
            noise: list[dict[str, object]] | None = None) -> None:
        fig = self.data[key]
        values = fig["values"].setdefault(server, [None] * fig["reps"])
        values[rep] = value
        fig["noise"].setdefault(server, [None] * fig["reps"])[rep] = noise
        # Why a value is missing: no quiet window (disturbed), or the measurement failed.
        disturbed = noise is not None and bool(noise) and not any(w.get("quiet") for w in noise)
        fig.setdefault("status", {}).setdefault(server, ["missing"] * fig["reps"])[rep] = (
            "ok" if value is not None else "disturbed" if disturbed else "failed")

    def note(self, key: str, text: str) -> None:
        if text not in self.data[key]["notes"]:
            self.data[key]["notes"].append(text)

    def summarize(self) -> None:
        for fig in self.data.values():
            values = fig["values"]
            status = fig.get("status", {})
            fig["summary"] = {k: spread(v, status.get(k)) for k, v in values.items()}
            ratios: dict[str, Any] = {}
            # "xes": a cluster of XES next to one XES process.
            for over in ("peerjs", "bare", "xes"):
                for kind, xs in values.items():
                    if kind == over or over not in values:
                        continue
                    per_rep = [x / b if x is not None and b else None
                               for x, b in zip(xs, values[over], strict=True)]
                    both = [("disturbed" if "disturbed" in (s1, s2) else "ok")
                            for s1, s2 in zip(status.get(kind, []), status.get(over, []),
                                              strict=False)]
                    ratios[f"{kind}/{over}"] = {"per_rep": per_rep, **spread(per_rep, both)}
            fig["ratios"] = ratios
