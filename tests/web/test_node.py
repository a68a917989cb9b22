"""The browser client's DOM-free modules under Node's own test runner (tests/web/*.test.mjs).

call.js holds the call's state and transitions; its tests drive it with fakes for the WebSocket
and RTCPeerConnection, no browser needed. verify.js (safety codes) is checked against the test
vector the Python tests share. This runs them as part of pytest, so the README's one
test command covers them; a failure shows Node's report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_node_test_runner_passes() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: scripts/test.sh installs it (Debian nodejs)"
    specs = sorted(str(path) for path in HERE.glob("*.test.mjs"))
    assert specs, "no tests/web/*.test.mjs found"
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", *specs],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
