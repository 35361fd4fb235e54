"""Counting what a receiver got against the events expected (chaos, bench and tests use it)."""

from worker.webhooks.receiver import Tally, tally

EXPECTED = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], None: ["app1"]}


def test_everything_once_in_order() -> None:
    arrived = ["a1", "b1", "app1", "a2", "b2", "a3"]
    assert tally(EXPECTED, arrived) == Tally(delivered=6, duplicated=0, lost=0, out_of_order=0)


def test_a_redelivery_is_a_duplicate_not_a_reordering() -> None:
    arrived = ["a1", "a2", "a1", "a3", "b1", "b2", "app1"]
    assert tally(EXPECTED, arrived) == Tally(delivered=6, duplicated=1, lost=0, out_of_order=0)


def test_missing_and_swapped_events_are_counted() -> None:
    arrived = ["a2", "a1", "b1", "app1"]
    assert tally(EXPECTED, arrived) == Tally(delivered=4, duplicated=0, lost=2, out_of_order=1)


def test_events_nobody_expected_are_not_delivered_ones() -> None:
    assert tally({"a": ["a1"]}, ["zz", "a1"]).delivered == 1
