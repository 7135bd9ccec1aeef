"""The Jepsen-style checker on hand-made histories: it must see each kind of violation."""

from __future__ import annotations

from collections import Counter

import pytest

from testbed.chaos import ChaosPlan, History, assert_safe, check, duplicate_bound


def history(attempted: str, acknowledged: str, done: str) -> History:
    return History(frozenset(attempted.split()), frozenset(acknowledged.split()),
                   Counter(done.split()))


def test_a_clean_history_passes() -> None:
    verdict = check(history("a b c", "a b c", "a b c"))
    assert not verdict.lost and not verdict.unexpected and not verdict.duplicated
    assert verdict.done == 3
    assert_safe(verdict, duplicate_bound=0)


def test_a_confirmed_message_never_done_is_lost() -> None:
    verdict = check(history("a b c", "a b c", "a c"))
    assert verdict.lost == {"b"}
    with pytest.raises(AssertionError, match=r"1 lost \(confirmed, never done\)"):
        assert_safe(verdict, duplicate_bound=100)


def test_an_unconfirmed_message_never_done_is_not_lost_and_one_done_is_recovered() -> None:
    verdict = check(history("a b c", "a", "a c"))
    assert not verdict.lost
    assert verdict.recovered == {"c"}
    assert_safe(verdict, duplicate_bound=0)


def test_a_message_done_but_never_published_is_unexpected() -> None:
    verdict = check(history("a", "a", "a z"))
    assert verdict.unexpected == {"z"}
    with pytest.raises(AssertionError, match="1 unexpected"):
        assert_safe(verdict, duplicate_bound=100)


def test_duplicates_are_counted_per_extra_execution_and_bounded() -> None:
    verdict = check(history("a b", "a b", "a a a b b"))
    assert verdict.duplicated == {"a": 3, "b": 2}
    assert verdict.extra_executions == 3
    assert_safe(verdict, duplicate_bound=3)
    with pytest.raises(AssertionError, match="3 duplicate executions exceed the bound of 2"):
        assert_safe(verdict, duplicate_bound=2)


def test_the_duplicate_bound_grows_with_kills_faults_prefetch_and_windows() -> None:
    plan = ChaosPlan(tasks=10, workers=4, prefetch=10, window=100, cli_tasks=0)
    assert duplicate_bound(plan, kills=0, broker_faults=0) == 0
    assert duplicate_bound(plan, kills=3, broker_faults=0) == 30
    assert duplicate_bound(plan, kills=0, broker_faults=2) == 2 * (4 * 10 + 100)
    with_cli = ChaosPlan(tasks=10, prefetch=10, window=100, cli_tasks=5, cli_window=50)
    assert duplicate_bound(with_cli, kills=0, broker_faults=1) == 4 * 10 + 150
