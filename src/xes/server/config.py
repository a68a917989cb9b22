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
    # Where protected rooms and the restart snapshot are saved (server.store), and where safety
    # facts live (docs/privacy.md): SQLite in data_dir, or PostgreSQL at `database`. No data_dir
    # keeps nothing on disk: a restart forgets every room, and safety facts go to an in-memory
    # SQLite with a fresh identity secret (for tests, bench and embedding only).
    data_dir: Path | None = None
    database: str | None = None
    # The secret identities are hashed with; default data_dir/identity-secret. Share it between nodes.
    identity_secret_file: Path | None = None
    # How often retention runs (docs/privacy.md, "Retention").
    retention_seconds: float = 3600.0
    # The moderators' page (/moderate) listens on its own port: picows serves only GET.
    moderate_host: str | None = None
    moderate_port: int | None = None
    # Behind a TLS proxy the moderators' session cookie is marked Secure.
    behind_tls: bool = False
    # Behind a reverse proxy every client has the proxy's address: read X-Forwarded-For instead
    # (only for the per-network limit on new identities; never stored, never logged).
    trust_forwarded_for: bool = False
    # One node of a cluster sharing state through this Redis (server.cluster); None: alone.
    redis_url: str | None = None
    # This node's id in the cluster, its label on /metrics and in the logs (default: a random
    # one, as a restarted node is a new node).
    node_id: str | None = None
    # Accept on a port other processes listen on too (SO_REUSEPORT): --workers, or several units.
    reuse_port: bool = False
    # /metrics and /healthz for the operator, on their own port (None: not served), by default on
    # loopback whatever --host is, so a public listener never publishes them by accident.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
