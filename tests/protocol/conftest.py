"""Readers for the other two copies of the contract: the browser module and the document."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_JS = ROOT / "src" / "xes" / "web" / "protocol.js"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"


@pytest.fixture(scope="session")
def browser_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The tables web/protocol.js exports, as the page sees them: the module is run under Node
    (not pattern-matched), so a computed or spread table is read right too."""
    node = shutil.which("node")
    assert node is not None, "node is needed to read the browser's protocol module"
    # A .mjs copy is an ES module to every Node version, whatever the file's directory says.
    module = tmp_path_factory.mktemp("js") / "protocol.mjs"
    module.write_bytes(PROTOCOL_JS.read_bytes())
    script = (
        f"const p = await import({json.dumps(module.as_uri())});"
        "console.log(JSON.stringify({close: p.CLOSE_CODES, errors: p.ERROR_CODES,"
        " server_types: p.SERVER_MESSAGE_TYPES}));"
    )
    done = subprocess.run([node, "--input-type=module", "-e", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    tables: dict[str, object] = json.loads(done.stdout)
    return tables


def markdown_section(heading: str) -> str:
    """The text of docs/protocol.md under the level-2 `heading`, up to the next one."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def markdown_table(heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading` in docs/protocol.md, as cell texts."""
    rows = [line for line in markdown_section(heading).splitlines() if line.startswith("|")]
    assert len(rows) > 2, f"no table under {heading!r}"
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]
