"""A real PostgreSQL for the tests: a throwaway cluster in a temporary directory, one per session.

Debian's postgresql package (installed by scripts/test.sh) provides initdb and pg_ctl. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user (runuser).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from xes.server.relay import free_port

_databases = itertools.count()


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed: scripts/test.sh should have installed it")
    return found[-1]


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster on a free loopback port; yields its URL (user xes, trust auth)."""
    root = Path(tempfile.mkdtemp(prefix="xes-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port("127.0.0.1")
    subprocess.run(_as_owner([_binary("initdb"), "-D", str(data), "-U", "xes", "--auth=trust",
                              "--no-sync", "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l",
                              str(root / "log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=90)
    try:
        yield f"postgresql://xes@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(cluster_url: str) -> str:
    """A new empty database in the cluster, so each test starts from nothing; its URL."""
    name = f"xes_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(cluster_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return cluster_url.rsplit("/", 1)[0] + "/" + name
