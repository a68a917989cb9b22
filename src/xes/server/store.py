"""The server's data directory: the few things that must outlive the process, written safely.

What is written (docs/privacy.md, "What the server stores"): ``rooms.json``, the protected rooms'
rules (:mod:`xes.core.saved`), rewritten whenever one changes. Every file is written whole to a
temporary file, flushed to disk (fsync), renamed over the old one and the directory flushed, so a
crash at any moment leaves either the old file or the new one, never a torn one. Files are
created 0600 and the directory 0700: only the server's own user can read them.

One server per directory: a second ``xes serve`` on the same directory would overwrite the
first's rooms, so it is refused at start (an advisory lock on ``lock``, released when the process
ends however it ends).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

__all__ = ["DataDir", "DataDirBusy", "default_data_dir", "write_atomically", "ROOMS_FILE",
           "SNAPSHOT_FILE"]

ROOMS_FILE: Final = "rooms.json"
SNAPSHOT_FILE: Final = "snapshot.json"
_LOCK_FILE: Final = "lock"


class DataDirBusy(OSError):
    """Another process holds this data directory."""


def default_data_dir() -> Path:
    """Where `xes serve` keeps its data unless told (``--data-dir``, ``XES_DATA_DIR``).

    systemd's ``StateDirectory=`` (``$STATE_DIRECTORY``) first, then ``$XDG_STATE_HOME/xes``,
    then ``~/.local/state/xes``.
    """
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "xes"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new, whole.

    Blocking (two fsyncs, about a millisecond each on an SSD): run it off the event loop.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)  # the rename itself is durable only once the directory is
    finally:
        os.close(directory)


class DataDir:
    """An opened data directory, locked for this process.

    Raises:
        DataDirBusy: Another running server uses it.
        OSError: It cannot be created or opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise DataDirBusy(f"another xes serve is using the data directory {path}") from None

    @property
    def rooms_path(self) -> Path:
        return self.path / ROOMS_FILE

    def read(self, name: str) -> bytes | None:
        """The contents of one file, or None if there is none."""
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """Replace one file atomically (blocking: see :func:`write_atomically`)."""
        write_atomically(self.path / name, data)

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock (the process ending does too)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
