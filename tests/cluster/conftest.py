"""The cluster tests (issue 14) speak the protocol through tests/server/wsclient.py: its clients are
closed after every test here too."""

from tests.server.conftest import _close_clients

__all__ = ["_close_clients"]
