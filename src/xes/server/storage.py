"""Where safety facts are kept: SQLite (WAL) by default, PostgreSQL for several nodes.

The core decides (:mod:`xes.core.safety`), this module stores. One schema for both databases,
created and upgraded by the versioned migrations below when the server starts. Every call runs
in one worker thread (:class:`Storage`), never on the event loop and never on the relay path:
the server asks the database only when someone identifies, rates, blocks, reports, or a
moderator acts. docs/privacy.md lists every column with its retention; :meth:`Database.retention`
enforces it on a schedule.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from ..core import safety
from ..core.safety import ModeratorAction, QueuedReport, ReportReason, Score, Standing

__all__ = ["Database", "Storage", "MIGRATIONS", "ReportRow", "AuditRow", "open_database"]

P = ParamSpec("P")
T = TypeVar("T")

# Each migration is a list of statements; {id} and {blob} are filled in per database. Never edit
# one that has shipped: add the next.
MIGRATIONS: Final[list[list[str]]] = [
    [
        """CREATE TABLE identities (
            identity TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL,
            good DOUBLE PRECISION NOT NULL DEFAULT 0, bad DOUBLE PRECISION NOT NULL DEFAULT 0,
            fresh_good DOUBLE PRECISION NOT NULL DEFAULT 0,
            fresh_bad DOUBLE PRECISION NOT NULL DEFAULT 0,
            score_as_of DOUBLE PRECISION NOT NULL DEFAULT 0, cooldowns INTEGER NOT NULL DEFAULT 0,
            cooldown_until DOUBLE PRECISION, banned INTEGER NOT NULL DEFAULT 0, warning TEXT,
            last_seen DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE blocks (
            blocker TEXT NOT NULL, blocked TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (blocker, blocked))""",
        "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
        """CREATE TABLE ratings (
            id {id}, rater TEXT NOT NULL, target TEXT NOT NULL, good INTEGER NOT NULL,
            weight DOUBLE PRECISION NOT NULL, fresh INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX ratings_by_time ON ratings (created_at)",
        """CREATE TABLE reports (
            id {id}, reporter TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
            text TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            call_seconds DOUBLE PRECISION NOT NULL, status TEXT NOT NULL DEFAULT 'open',
            resolved_at DOUBLE PRECISION, resolved_by TEXT)""",
        "CREATE INDEX reports_by_status ON reports (status, target)",
        """CREATE TABLE moderators (
            name TEXT PRIMARY KEY, salt {blob} NOT NULL, digest {blob} NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE audit_log (
            id {id}, at DOUBLE PRECISION NOT NULL, moderator TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT, report_id INTEGER, detail TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE network_salts (day INTEGER PRIMARY KEY, salt {blob} NOT NULL)""",
        """CREATE TABLE network_counts (
            network TEXT NOT NULL, day INTEGER NOT NULL, created INTEGER NOT NULL,
            PRIMARY KEY (network, day))""",
    ],
]
AUDIT_RETENTION_SECONDS: Final = 365 * 86_400.0
IDENTITY_RETENTION_SECONDS: Final = 365 * 86_400.0
_DIALECT: Final = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA"},
}
_STANDING_COLUMNS: Final = ("identity, created_at, good, bad, fresh_good, fresh_bad, score_as_of, "
                            "cooldowns, cooldown_until, banned, warning")


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    reporter: str
    target: str
    reason: ReportReason
    text: str
    created_at: float
    call_seconds: float
    status: str
    reports_against_target: int


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: float
    moderator: str
    action: str
    target: str | None
    report_id: int | None
    detail: str


def _standing(row: Sequence[Any]) -> Standing:
    return Standing(identity=row[0], created_at=row[1],
                    score=Score(row[2], row[3], row[4], row[5], row[6]), cooldowns=row[7],
                    cooldown_until=row[8], banned=bool(row[9]), warning=row[10])


def _standing_values(s: Standing) -> tuple[Any, ...]:
    return (s.identity, s.created_at, s.score.good, s.score.bad, s.score.fresh_good,
            s.score.fresh_bad, s.score.as_of, s.cooldowns, s.cooldown_until, int(s.banned), s.warning)


class Database:
    """One connection to SQLite or PostgreSQL; synchronous, used from one thread at a time.

    SQL is written once with ``?`` placeholders and portable types; PostgreSQL's driver gets
    ``%s``. ``transaction()`` serialises writers: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
    row locks (``FOR UPDATE``) where a row is read and then rewritten.
    """

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self._for_update = " FOR UPDATE" if dialect == "postgresql" else ""

    # ------------------------------------------------------------------ plumbing

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.connection.execute(self._sql(sql), tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.execute(sql, params).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()

    def migrate(self) -> int:
        """Bring the schema up to date (at start-up); returns the version now in place.

        Several nodes may start at once against one PostgreSQL: an advisory lock lets one
        migrate while the others wait, then find nothing left to do.
        """
        with self.transaction():
            if self.dialect == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(7242617)")
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.one("SELECT version FROM schema_version")
            version = row[0] if row is not None else 0
            if row is None:
                self.execute("INSERT INTO schema_version (version) VALUES (0)")
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    self.execute(statement.format(**_DIALECT[self.dialect]))
                self.execute("UPDATE schema_version SET version = ?", (number,))
        return len(MIGRATIONS)

    # ------------------------------------------------------------------ identities

    def load_identity(self, identity: str, network: str | None, day: int, now: float
                      ) -> tuple[Standing | None, frozenset[str], int]:
        """(standing or None, identities blocked either way, new identities on network today)."""
        row = self.one(f"SELECT {_STANDING_COLUMNS} FROM identities WHERE identity = ?", (identity,))
        if row is not None:
            self.execute("UPDATE identities SET last_seen = ? WHERE identity = ?", (now, identity))
        blocks = {r[0] for r in self.all("SELECT blocked FROM blocks WHERE blocker = ?", (identity,))}
        blocks |= {r[0] for r in self.all("SELECT blocker FROM blocks WHERE blocked = ?", (identity,))}
        created = 0
        if row is None and network is not None:
            found = self.one("SELECT created FROM network_counts WHERE network = ? AND day = ?",
                             (network, day))
            created = found[0] if found is not None else 0
        return (_standing(row) if row is not None else None), frozenset(blocks), created

    def create_identity(self, standing: Standing, network: str | None, day: int, now: float) -> None:
        with self.transaction():
            self.execute(f"INSERT INTO identities ({_STANDING_COLUMNS}, last_seen) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (identity) DO NOTHING",
                         (*_standing_values(standing), now))
            if network is not None:
                self.execute("INSERT INTO network_counts (network, day, created) VALUES (?, ?, 1) "
                             "ON CONFLICT (network, day) DO UPDATE SET created = network_counts.created + 1",
                             (network, day))

    def standing(self, identity: str) -> Standing | None:
        row = self.one(f"SELECT {_STANDING_COLUMNS} FROM identities WHERE identity = ?", (identity,))
        return _standing(row) if row is not None else None

    def save_standing(self, s: Standing) -> None:
        self.execute("UPDATE identities SET good = ?, bad = ?, fresh_good = ?, fresh_bad = ?, "
                     "score_as_of = ?, cooldowns = ?, cooldown_until = ?, banned = ?, warning = ? "
                     "WHERE identity = ?",
                     (*_standing_values(s)[2:], s.identity))

    def network_salt(self, day: int, fresh_salt: bytes) -> bytes:
        """Today's salt for hashing addresses: the one stored for ``day``, or ``fresh_salt``."""
        with self.transaction():
            self.execute("INSERT INTO network_salts (day, salt) VALUES (?, ?) ON CONFLICT (day) DO NOTHING",
                         (day, fresh_salt))
            row = self.one("SELECT salt FROM network_salts WHERE day = ?", (day,))
        return bytes(row[0])

    # ------------------------------------------------------------------ blocks, ratings, reports

    def save_block(self, blocker: str, blocked: str, at: float) -> None:
        self.execute("INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (blocker, blocked) DO NOTHING", (blocker, blocked, at))

    def blocks_of(self, identity: str) -> set[str]:
        return {r[0] for r in self.all("SELECT blocked FROM blocks WHERE blocker = ?", (identity,))}

    def save_rating(self, rating: safety.Rating) -> Standing | None:
        """Keep the rating and fold it into the target's score; the target's new standing."""
        with self.transaction():
            row = self.one(f"SELECT {_STANDING_COLUMNS} FROM identities WHERE identity = ?"
                           + self._for_update, (rating.target,))
            if row is None:
                return None
            after = safety.apply_rating(_standing(row), rating)
            self.save_standing(after)
            self.execute("INSERT INTO ratings (rater, target, good, weight, fresh, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (rating.rater, rating.target, int(rating.good),
                                                       rating.weight, int(rating.fresh), rating.at))
        return after

    def save_report(self, reporter: str, target: str, reason: ReportReason, text: str, at: float,
                    call_seconds: float) -> None:
        self.execute("INSERT INTO reports (reporter, target, reason, text, created_at, call_seconds) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (reporter, target, str(reason), text, at, call_seconds))

    def open_reports(self) -> list[ReportRow]:
        """Open reports in the moderators' order (:func:`xes.core.safety.queue_order`)."""
        rows = self.all("SELECT r.id, r.reporter, r.target, r.reason, r.text, r.created_at, "
                        "r.call_seconds, r.status, (SELECT COUNT(*) FROM reports o WHERE "
                        "o.target = r.target AND o.status = 'open') FROM reports r WHERE r.status = 'open'")
        reports = {row[0]: ReportRow(row[0], row[1], row[2], ReportReason(row[3]), row[4], row[5],
                                     row[6], row[7], row[8]) for row in rows}
        order = safety.queue_order([QueuedReport(r.id, r.reason, r.created_at, r.reports_against_target)
                                    for r in reports.values()])
        return [reports[q.id] for q in order]

    def resolve(self, report_id: int, action: ModeratorAction, moderator: str, now: float,
                warning: str) -> Standing | None:
        """A moderator's decision on one report: the target's new standing, audit logged.

        None if the report is not open (already handled by someone else): nothing changes.
        """
        with self.transaction():
            row = self.one("SELECT target, status FROM reports WHERE id = ?" + self._for_update,
                           (report_id,))
            if row is None or row[1] != "open":
                return None
            target = row[0]
            current = self.one(f"SELECT {_STANDING_COLUMNS} FROM identities WHERE identity = ?"
                               + self._for_update, (target,))
            after = None
            if current is not None:
                after = safety.moderate(_standing(current), action, now, warning)
                self.save_standing(after)
            status = {"dismiss": "dismissed", "warn": "warned", "cooldown": "cooled",
                      "ban": "banned"}[action.value]
            self.execute("UPDATE reports SET status = ?, resolved_at = ?, resolved_by = ? WHERE id = ?",
                         (status, now, moderator, report_id))
            self.audit(now, moderator, action.value, target, report_id,
                       warning if action is ModeratorAction.WARN else "")
        return after

    # ------------------------------------------------------------------ moderators and audit

    def add_moderator(self, name: str, salt: bytes, digest: bytes, now: float) -> None:
        with self.transaction():
            self.execute("INSERT INTO moderators (name, salt, digest, created_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET salt = excluded.salt, digest = excluded.digest",
                         (name, salt, digest, now))
            self.audit(now, name, "moderator-added", None, None, "")

    def moderator(self, name: str) -> tuple[bytes, bytes] | None:
        row = self.one("SELECT salt, digest FROM moderators WHERE name = ?", (name,))
        return (bytes(row[0]), bytes(row[1])) if row is not None else None

    def audit(self, at: float, moderator: str, action: str, target: str | None,
              report_id: int | None, detail: str) -> None:
        self.execute("INSERT INTO audit_log (at, moderator, action, target, report_id, detail) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (at, moderator, action, target, report_id, detail))

    def audit_log(self, limit: int = 100) -> list[AuditRow]:
        return [AuditRow(*row) for row in self.all(
            "SELECT at, moderator, action, target, report_id, detail FROM audit_log "
            "ORDER BY id DESC LIMIT ?", (limit,))]

    # ------------------------------------------------------------------ retention

    def retention(self, now: float) -> dict[str, int]:
        """Delete what docs/privacy.md says is kept no longer; how many rows went, per table."""
        gone: dict[str, int] = {}
        today = safety.utc_day(now)
        with self.transaction():
            for table, sql, params in (
                ("ratings", "DELETE FROM ratings WHERE created_at < ?",
                 (now - safety.RATING_RETENTION_SECONDS,)),
                ("reports", "DELETE FROM reports WHERE status <> 'open' AND resolved_at < ?",
                 (now - safety.RESOLVED_REPORT_RETENTION_SECONDS,)),
                ("network_salts", "DELETE FROM network_salts WHERE day < ?", (today,)),
                ("network_counts", "DELETE FROM network_counts WHERE day < ?", (today,)),
                ("audit_log", "DELETE FROM audit_log WHERE at < ?", (now - AUDIT_RETENTION_SECONDS,)),
                ("blocks", "DELETE FROM blocks WHERE blocker IN (SELECT identity FROM identities "
                 "WHERE last_seen < ? AND banned = 0)", (now - IDENTITY_RETENTION_SECONDS,)),
                ("identities", "DELETE FROM identities WHERE last_seen < ? AND banned = 0",
                 (now - IDENTITY_RETENTION_SECONDS,)),
            ):
                gone[table] = self.execute(sql, params).rowcount
        return gone


_POSTGRES_URL = re.compile(r"^postgres(ql)?://")


def open_database(database: str | None, data_dir: Path) -> Database:
    """Connect and migrate: PostgreSQL for a ``postgresql://`` URL, else SQLite in ``data_dir``.

    Raises:
        ValueError: The URL is not one XES knows.
        OSError, sqlite3.Error, psycopg.Error: The database cannot be opened.
    """
    if database is not None and _POSTGRES_URL.match(database):
        import psycopg  # only deployments that use PostgreSQL need the driver

        db = Database(psycopg.connect(database, autocommit=True), "postgresql")
    elif database is not None and not database.startswith("sqlite:"):
        raise ValueError(f"--database takes a postgresql:// URL or sqlite:PATH, "
                         f"not {database.split(':')[0]!r}")
    else:
        # sqlite:PATH: one file several processes of one host share (--workers); WAL allows it.
        path = Path(database[len("sqlite:"):]) if database else data_dir / "xes.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=5000")
        db = Database(connection, "sqlite")
    db.migrate()
    return db


class Storage:
    """The database behind one worker thread, so the event loop never waits on it."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xes-db")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._thread.submit(self.database.close).result()
        self._thread.shutdown()
