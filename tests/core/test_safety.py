"""The safety rules of xes.core.safety: pure functions, proven with property tests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xes.core import safety
from xes.core.safety import Rating, ReportReason, Score, Standing

NOW = 1_800_000_000.0
DAY = 86_400.0

weights = st.floats(min_value=0.0, max_value=1.0)
scores = st.builds(Score, good=st.floats(0, 500), bad=st.floats(0, 500), fresh_good=st.floats(0, 50),
                   fresh_bad=st.floats(0, 50), as_of=st.floats(NOW - 400 * DAY, NOW))


@settings(max_examples=300, deadline=None)
@given(score=scores, weight=weights, good=st.booleans(), fresh=st.booleans(),
       later=st.floats(0, 100 * DAY))
def test_one_rating_never_moves_a_trust_more_than_the_documented_bound(
        score: Score, weight: float, good: bool, fresh: bool, later: float) -> None:
    at = NOW + later
    target = Standing("t", created_at=NOW - 400 * DAY, score=score)
    after = safety.apply_rating(target, Rating("r", "t", good, weight, fresh, at))
    step = safety.trust(after.score, at) - safety.trust(score, at)
    assert abs(step) <= safety.MAX_STEP + 1e-12
    assert (step >= -1e-12) if good else (step <= 1e-12)


@settings(max_examples=200, deadline=None)
@given(ring=st.integers(1, 300), own_good=st.floats(0, 50), spread=st.floats(0, 6 * DAY))
def test_a_ring_of_fresh_identities_cannot_push_an_honest_one_into_cooldown(
        ring: int, own_good: float, spread: float) -> None:
    honest = Standing("honest", created_at=NOW - 400 * DAY, score=Score(good=own_good, as_of=NOW))
    for n in range(ring):
        at = NOW + spread * n / ring
        fresh = Standing(f"sybil-{n}", created_at=at - 3600)  # an hour old: as fresh as it gets
        weight, is_fresh = safety.rating_weight(fresh, at)
        assert is_fresh
        honest = safety.apply_rating(honest, Rating(fresh.identity, "honest", False, weight, True, at))
    assert honest.cooldown_until is None
    assert safety.trust(honest.score, NOW + spread) > safety.COOLDOWN_BELOW


def test_new_identities_start_neutral_and_weigh_little() -> None:
    new = Standing("n", created_at=NOW)
    assert safety.trust(new.score, NOW) == 0.5
    weight, fresh = safety.rating_weight(new, NOW)
    assert fresh and weight == 0.5 * safety.FRESH_RATER_FACTOR


def _trusted_raters(count: int) -> list[Standing]:
    return [Standing(f"rater-{n}", created_at=NOW - 400 * DAY, score=Score(good=40.0, as_of=NOW))
            for n in range(count)]


def test_bad_ratings_from_trusted_raters_cool_down_for_an_hour_then_a_day() -> None:
    target = Standing("t", created_at=NOW - 400 * DAY)
    at = NOW
    raters = iter(_trusted_raters(40))
    while target.cooldown_until is None:
        rater = next(raters)
        weight, fresh = safety.rating_weight(rater, at)
        target = safety.apply_rating(target, Rating(rater.identity, "t", False, weight, fresh, at))
    assert safety.cooldown_left(target, at) == safety.FIRST_COOLDOWN_SECONDS
    assert safety.trust(target.score, at) < safety.COOLDOWN_BELOW
    # Ratings during a cooldown do not stack another; the next one after it does, for a day.
    rater = next(raters)
    during = safety.apply_rating(target, Rating(rater.identity, "t", False, 0.9, False, at + 60))
    assert during.cooldown_until == target.cooldown_until
    after = at + safety.FIRST_COOLDOWN_SECONDS + 1
    assert safety.cooldown_left(during, after) is None
    again = safety.apply_rating(during, Rating("x", "t", False, 0.9, False, after))
    assert safety.cooldown_left(again, after) == safety.LATER_COOLDOWN_SECONDS


def test_scores_decay_with_a_thirty_day_half_life() -> None:
    score = Score(bad=10.0, as_of=NOW)
    assert score.at(NOW + safety.HALF_LIFE_SECONDS).bad == 5.0
    assert safety.trust(score, NOW + 10 * safety.HALF_LIFE_SECONDS) > 0.49


@given(st.lists(st.tuples(st.sampled_from(list(ReportReason)), st.floats(0, 1e6), st.integers(1, 9)),
                min_size=1, max_size=30))
def test_the_queue_puts_suspected_under_18_first_then_the_oldest(
        reports: list[tuple[ReportReason, float, int]]) -> None:
    queue = safety.queue_order([safety.QueuedReport(n, reason, at, count)
                                for n, (reason, at, count) in enumerate(reports)])
    lanes = [r.reason is not ReportReason.UNDER_18 for r in queue]
    assert lanes == sorted(lanes)
    for before, after in zip(queue, queue[1:], strict=False):
        if (before.reason is ReportReason.UNDER_18) == (after.reason is ReportReason.UNDER_18):
            assert before.created_at <= after.created_at


def test_moderators_actions() -> None:
    s = Standing("t", created_at=NOW)
    assert safety.moderate(s, safety.ModeratorAction.DISMISS, NOW, "") == s
    assert safety.moderate(s, safety.ModeratorAction.WARN, NOW, "Be kind").warning == "Be kind"
    assert safety.moderate(s, safety.ModeratorAction.BAN, NOW, "").banned
    cooled = safety.moderate(s, safety.ModeratorAction.COOLDOWN, NOW, "")
    assert safety.cooldown_left(cooled, NOW) == safety.LATER_COOLDOWN_SECONDS


def test_new_identities_per_network_are_limited_per_day() -> None:
    assert safety.may_create_identity(safety.NEW_IDENTITIES_PER_NETWORK_PER_DAY - 1)
    assert not safety.may_create_identity(safety.NEW_IDENTITIES_PER_NETWORK_PER_DAY)
    assert safety.utc_day(NOW) != safety.utc_day(NOW + DAY)
