"""`GET /healthz`, the liveness check docs/deploy.md tells load balancers and monitors to use."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import XesServerProcess

pytestmark = pytest.mark.timeout(30)


def test_healthz_answers_200_ok_in_plain_text(xes_server: XesServerProcess) -> None:
    with urllib.request.urlopen(xes_server.http_url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.read() == b"ok\n"


def test_healthz_ignores_a_query_string(xes_server: XesServerProcess) -> None:
    """Some monitors add a cache-busting query; the check must still answer."""
    with urllib.request.urlopen(xes_server.http_url + "/healthz?probe=1", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok\n")
