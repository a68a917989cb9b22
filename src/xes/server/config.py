"""Server settings, gathered from the command line and the environment in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.signalling import CoreSettings

__all__ = ["ServerSettings"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything `xes serve` can be told. No module globals: tests build their own."""

    host: str = "127.0.0.1"
    port: int = 8000
    core: CoreSettings = field(default_factory=CoreSettings)
    # Origins allowed besides the server's own (scheme://host[:port]), e.g. behind a proxy.
    allowed_origins: frozenset[str] = frozenset()
    rate_per_second: float = 100.0
    rate_burst: int = 400
    error_streak_limit: int = 50
    heartbeat_seconds: float = 10.0
    hard_frame_limit: int = 1_048_576
    # Debug logging includes message contents (SDP, candidates, addresses): off by default.
    debug: bool = False
    # Where protected rooms are saved so a restart cannot weaken them (server.store); None keeps
    # nothing on disk, so a restart forgets every room (for tests and embedding only).
    data_dir: Path | None = None
