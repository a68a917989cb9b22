from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.server.wsclient import close_all_clients


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_all_clients()
