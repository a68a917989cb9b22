"""Safety with strangers without listening: trust, cooldowns, blocks, reports and moderation rules.

XES never hears a call, so everything here comes from what people tell it: ratings after a call,
blocks, reports, and moderators' decisions. This module is pure like the rest of the core: times
are passed in (unix seconds: these facts outlive the process, so they are stored on the wall
clock), and it decides; the shell stores. docs/moderation.md states every number below for
operators and moderators; the property tests in tests/core/test_safety.py prove the promises.

Trust
-----
An identity's trust is a Beta-style estimate with a neutral prior::

    trust = (PRIOR + good) / (2 * PRIOR + good + bad)

where ``good`` and ``bad`` are the sums of the weights of the ratings it received, each weight
halving every ``HALF_LIFE_SECONDS`` (the sums are kept already decayed to ``as_of``: exponential
decay is linear, so folding ratings into them loses nothing). A fresh identity has no ratings:
trust 0.5. A rating's weight is the rater's own trust when it rated (0 to 1), times
``FRESH_RATER_FACTOR`` if the rater is younger than ``MATURE_AFTER_SECONDS``; and what all fresh
raters together give one identity is capped at ``FRESH_WEIGHT_CAP`` in each direction. Hence:

- one rating moves a trust by at most ``MAX_STEP`` = 1 / (2 * PRIOR + 1) (weight <= 1, and the
  denominator never falls below 2 * PRIOR);
- any number of fresh identities rating one down leave it at least
  PRIOR / (2 * PRIOR + FRESH_WEIGHT_CAP), above ``COOLDOWN_BELOW``: a ring of new identities
  cannot push anyone into a cooldown.

Cooldowns
---------
A bad rating that leaves the target's trust below ``COOLDOWN_BELOW`` while it has no cooldown
running starts one: ``FIRST_COOLDOWN_SECONDS`` the first time, ``LATER_COOLDOWN_SECONDS`` after.
During a cooldown ``match`` is refused with the time left. A moderator's cooldown is always the
longer one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

__all__ = [
    "PRIOR", "HALF_LIFE_SECONDS", "MATURE_AFTER_SECONDS", "FRESH_RATER_FACTOR", "FRESH_WEIGHT_CAP",
    "COOLDOWN_BELOW", "FIRST_COOLDOWN_SECONDS", "LATER_COOLDOWN_SECONDS", "MAX_STEP",
    "RATING_RETENTION_SECONDS", "RESOLVED_REPORT_RETENTION_SECONDS", "NETWORK_RETENTION_SECONDS",
    "MAX_REPORT_TEXT", "NEW_IDENTITIES_PER_NETWORK_PER_DAY",
    "Score", "Standing", "Rating", "ReportReason", "ModeratorAction", "QueuedReport",
    "trust", "rating_weight", "apply_rating", "cooldown_left", "moderate", "queue_order",
    "may_create_identity", "utc_day",
]

PRIOR: Final = 5.0
HALF_LIFE_SECONDS: Final = 30 * 86_400.0
MATURE_AFTER_SECONDS: Final = 7 * 86_400.0
FRESH_RATER_FACTOR: Final = 0.2
FRESH_WEIGHT_CAP: Final = 1.0
COOLDOWN_BELOW: Final = 0.3
FIRST_COOLDOWN_SECONDS: Final = 3_600.0
LATER_COOLDOWN_SECONDS: Final = 86_400.0
MAX_STEP: Final = 1.0 / (2 * PRIOR + 1)
# Retention (docs/privacy.md): individual ratings are only kept while they may be looked at; the
# score already holds them.
RATING_RETENTION_SECONDS: Final = 30 * 86_400.0
RESOLVED_REPORT_RETENTION_SECONDS: Final = 90 * 86_400.0
NETWORK_RETENTION_SECONDS: Final = 86_400.0
MAX_REPORT_TEXT: Final = 1_000
NEW_IDENTITIES_PER_NETWORK_PER_DAY: Final = 5


@dataclass(frozen=True, slots=True)
class Score:
    """Decayed sums of rating weights, as of ``as_of`` (unix seconds)."""

    good: float = 0.0
    bad: float = 0.0
    fresh_good: float = 0.0
    fresh_bad: float = 0.0
    as_of: float = 0.0

    def at(self, now: float) -> Score:
        """The same score decayed to ``now`` (never forward past a later ``as_of``)."""
        if now <= self.as_of:
            return self
        factor = 0.5 ** ((now - self.as_of) / HALF_LIFE_SECONDS)
        return Score(self.good * factor, self.bad * factor, self.fresh_good * factor,
                     self.fresh_bad * factor, now)


@dataclass(frozen=True, slots=True)
class Standing:
    """What XES knows about one pseudonymous identity (a keyed hash of its public key)."""

    identity: str
    created_at: float
    score: Score = Score()
    cooldowns: int = 0                   # how many automatic or moderator cooldowns it has had
    cooldown_until: float | None = None  # unix seconds
    banned: bool = False
    warning: str | None = None           # a moderator's warning, shown on the next connect


@dataclass(frozen=True, slots=True)
class Rating:
    """One "Good call" / "Bad call" after a call, as stored until folded (RATING_RETENTION_SECONDS)."""

    rater: str
    target: str
    good: bool
    weight: float
    fresh: bool
    at: float


class ReportReason(StrEnum):
    HARASSMENT = "harassment"
    HATE = "hate"
    SEXUAL_CONTENT = "sexual-content"
    UNDER_18 = "under-18"
    OTHER = "other"


class ModeratorAction(StrEnum):
    DISMISS = "dismiss"
    WARN = "warn"
    COOLDOWN = "cooldown"
    BAN = "ban"


def trust(score: Score, now: float) -> float:
    """Trust in [0, 1] at ``now``; 0.5 for an identity nobody rated. See the module docstring."""
    s = score.at(now)
    good = s.good + min(s.fresh_good, FRESH_WEIGHT_CAP)
    bad = s.bad + min(s.fresh_bad, FRESH_WEIGHT_CAP)
    return (PRIOR + good) / (2 * PRIOR + good + bad)


def rating_weight(rater: Standing, now: float) -> tuple[float, bool]:
    """(weight, fresh) of a rating ``rater`` gives at ``now``: its trust, less if it is new."""
    fresh = now - rater.created_at < MATURE_AFTER_SECONDS
    weight = trust(rater.score, now)
    return (weight * FRESH_RATER_FACTOR if fresh else weight), fresh


def apply_rating(target: Standing, rating: Rating) -> Standing:
    """``target`` after ``rating``: its score, and a cooldown if the rating pushed it too low."""
    s = target.score.at(rating.at)
    w = min(1.0, max(0.0, rating.weight))
    if rating.fresh:
        s = replace(s, fresh_good=s.fresh_good + w) if rating.good else replace(s, fresh_bad=s.fresh_bad + w)
    else:
        s = replace(s, good=s.good + w) if rating.good else replace(s, bad=s.bad + w)
    after = replace(target, score=s)
    if (not rating.good and trust(s, rating.at) < COOLDOWN_BELOW
            and cooldown_left(target, rating.at) is None):
        after = _cooled(after, rating.at)
    return after


def _cooled(standing: Standing, now: float, seconds: float | None = None) -> Standing:
    if seconds is None:
        seconds = FIRST_COOLDOWN_SECONDS if standing.cooldowns == 0 else LATER_COOLDOWN_SECONDS
    return replace(standing, cooldowns=standing.cooldowns + 1, cooldown_until=now + seconds)


def cooldown_left(standing: Standing, now: float) -> float | None:
    """Seconds of cooldown left at ``now``, or None when it may look for a match."""
    if standing.cooldown_until is None or standing.cooldown_until <= now:
        return None
    return standing.cooldown_until - now


def moderate(standing: Standing, action: ModeratorAction, now: float, warning: str) -> Standing:
    """What a moderator's action does to the reported identity."""
    match action:
        case ModeratorAction.DISMISS:
            return standing
        case ModeratorAction.WARN:
            return replace(standing, warning=warning)
        case ModeratorAction.COOLDOWN:
            return _cooled(standing, now, LATER_COOLDOWN_SECONDS)
        case ModeratorAction.BAN:
            return replace(standing, banned=True)


@dataclass(frozen=True, slots=True)
class QueuedReport:
    """An open report as the moderators' queue orders it."""

    id: int
    reason: ReportReason
    created_at: float
    reports_against_target: int   # open reports against the same identity, this one included


def queue_order(reports: list[QueuedReport]) -> list[QueuedReport]:
    """Suspected under 18 first (the fastest lane); then oldest first; then the most reported."""
    return sorted(reports, key=lambda r: (r.reason is not ReportReason.UNDER_18, r.created_at,
                                          -r.reports_against_target, r.id))


def may_create_identity(created_today_on_network: int,
                        limit: int = NEW_IDENTITIES_PER_NETWORK_PER_DAY) -> bool:
    """A network (by its daily salted hash) may make ``limit`` new identities per UTC day."""
    return created_today_on_network < limit


def utc_day(now: float) -> int:
    """The UTC day number of unix time ``now``: the network salt's rotation period."""
    return math.floor(now / 86_400)
