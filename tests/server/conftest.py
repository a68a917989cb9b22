from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.wsclient import close_all_clients
from tests.support.postgres import fresh_database


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_all_clients()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """`xes serve` / `xes moderator` options for each backend: SQLite in a fresh --data-dir, or a
    fresh database in the session's PostgreSQL (the identity secret still in --data-dir)."""
    args = ["--data-dir", str(tmp_path)]
    if request.param == "postgresql":
        args += ["--database", fresh_database(request.getfixturevalue("postgres"))]
    return args
