"""Reading an `xes serve`'s /metrics page in tests: where it listens, and its samples."""

from __future__ import annotations

import re
import urllib.request

_METRICS_URL = re.compile(r"Metrics: (http://\S+/metrics)")


def metrics_urls(log: str) -> list[str]:
    """Every `Metrics: http://…/metrics` line a server (or its workers) printed, in order."""
    return _METRICS_URL.findall(log)


def scrape(url: str) -> dict[str, float]:
    """The page's samples: ``{'name{labels}': value}`` (comments skipped)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
