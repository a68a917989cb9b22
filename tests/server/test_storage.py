"""The storage shell on both databases: migrations, blocks, ratings, reports and retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xes.core import safety
from xes.core.safety import ModeratorAction, Rating, ReportReason, Standing
from xes.server.storage import MIGRATIONS, Database, open_database

NOW = 1_800_000_000.0
DAY = 86_400.0


@pytest.fixture
def database(storage_args: list[str]) -> Iterator[Database]:
    options = dict(zip(storage_args[::2], storage_args[1::2], strict=True))
    db = open_database(options.get("--database"), Path(options["--data-dir"]))
    yield db
    db.close()


def test_migrations_run_once_and_are_idempotent(database: Database) -> None:
    assert database.migrate() == len(MIGRATIONS)  # a second start finds nothing to do
    assert database.one("SELECT version FROM schema_version")[0] == len(MIGRATIONS)
    if database.dialect == "sqlite":
        assert database.one("PRAGMA journal_mode")[0] == "wal"


def test_identities_blocks_and_ratings(database: Database) -> None:
    ada, bob = Standing("ada", NOW - 400 * DAY), Standing("bob", NOW)
    database.create_identity(ada, "net-1", safety.utc_day(NOW), NOW)
    database.create_identity(bob, "net-1", safety.utc_day(NOW), NOW)
    standing, blocks, created_today = database.load_identity("carol", "net-1", safety.utc_day(NOW), NOW)
    assert standing is None and blocks == frozenset() and created_today == 2
    database.save_block("ada", "bob", NOW)
    database.save_block("ada", "bob", NOW)  # twice is once
    assert database.load_identity("bob", None, 0, NOW)[1] == {"ada"}  # both directions
    assert database.load_identity("ada", None, 0, NOW)[1] == {"bob"}
    after = database.save_rating(Rating("ada", "bob", False, 0.8, False, NOW))
    assert after is not None and after.score.bad == 0.8 and database.standing("bob") == after
    assert database.save_rating(Rating("ada", "nobody", False, 0.8, False, NOW)) is None


def test_reports_in_queue_order_resolved_once_and_audited(database: Database) -> None:
    database.create_identity(Standing("bob", NOW), None, 0, NOW)
    database.save_report("ada", "bob", ReportReason.HARASSMENT, "rude", NOW, 30.0)
    database.save_report("cy", "bob", ReportReason.UNDER_18, "", NOW + 60, 12.0)
    queue = database.open_reports()
    assert [r.reason for r in queue] == [ReportReason.UNDER_18, ReportReason.HARASSMENT]
    assert all(r.reports_against_target == 2 for r in queue)
    banned = database.resolve(queue[0].id, ModeratorAction.BAN, "grace", NOW + 120, "")
    assert banned is not None and banned.banned
    assert database.resolve(queue[0].id, ModeratorAction.DISMISS, "linus", NOW + 130, "") is None
    [entry] = database.audit_log()
    assert (entry.moderator, entry.action, entry.target, entry.report_id) == ("grace", "ban", "bob",
                                                                              queue[0].id)


def test_retention_deletes_what_the_privacy_page_says(database: Database) -> None:
    database.create_identity(Standing("old", NOW - 500 * DAY), None, 0, NOW - 400 * DAY)
    database.create_identity(Standing("bob", NOW), None, 0, NOW)
    database.save_rating(Rating("x", "bob", True, 0.5, False, NOW - 31 * DAY))
    database.save_rating(Rating("x", "bob", True, 0.5, False, NOW - 29 * DAY))
    database.save_report("a", "bob", ReportReason.OTHER, "", NOW - 100 * DAY, 1.0)
    database.save_report("a", "bob", ReportReason.OTHER, "", NOW - 100 * DAY, 1.0)
    database.save_report("a", "bob", ReportReason.OTHER, "", NOW - 100 * DAY, 1.0)
    first, second, third = (r.id for r in database.open_reports())
    database.resolve(first, ModeratorAction.DISMISS, "m", NOW - 91 * DAY, "")
    database.resolve(second, ModeratorAction.DISMISS, "m", NOW - 89 * DAY, "")
    database.network_salt(safety.utc_day(NOW - DAY), b"y" * 32)
    assert database.network_salt(safety.utc_day(NOW), b"z" * 32) == b"z" * 32
    assert database.network_salt(safety.utc_day(NOW), b"w" * 32) == b"z" * 32  # one per day
    database.create_identity(Standing("n", NOW - DAY), "net", safety.utc_day(NOW - DAY), NOW - DAY)
    gone = database.retention(NOW)
    assert gone["ratings"] == 1 and gone["reports"] == 1 and gone["identities"] == 1
    assert gone["network_salts"] == 1 and gone["network_counts"] == 1
    assert [r.id for r in database.open_reports()] == [third]  # open reports stay
    assert database.standing("old") is None and database.standing("bob") is not None
