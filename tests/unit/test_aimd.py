"""What a 429 does to the app's shared budget: the pure decision of the adaptive rate."""

import math

import pytest

from worker.bluebutton import aimd
from worker.bluebutton.aimd import Reaction, lowered, on_throttled

WINDOW = 1.02


def test_a_first_refusal_cuts_gently_and_pauses_for_retry_after() -> None:
    assert on_throttled(None, None, WINDOW) == Reaction(aimd.DECREASE_FACTOR, 0.0)
    assert on_throttled(None, 1.0, WINDOW) == Reaction(aimd.DECREASE_FACTOR, 1.0)
    assert on_throttled(30.0, 2.0, WINDOW) == Reaction(aimd.DECREASE_FACTOR, 2.0)


@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_refusals_of_the_same_burst_cut_once_yet_every_retry_after_is_kept(
    retry_after: float | None,
) -> None:
    for since in (0.0, 0.5, aimd.HOLD_WINDOWS * WINDOW - 0.01):
        assert on_throttled(since, retry_after, WINDOW) == Reaction(None, retry_after or 0.0)


def test_a_refusal_soon_after_a_cut_cuts_harder() -> None:
    soon = aimd.HOLD_WINDOWS * WINDOW + 0.1
    assert on_throttled(soon, 1.0, WINDOW) == Reaction(aimd.RAPID_FACTOR, 1.0)
    later = aimd.RAPID_WINDOWS * WINDOW + 0.1
    assert on_throttled(later, None, WINDOW).factor == aimd.DECREASE_FACTOR


def test_the_descent_from_the_limit_to_half_of_it_takes_few_pauses() -> None:
    # Refusals every hold while the rate is above the edge's 5/s: gentle first, then hard.
    rate, cuts, since = 10.0, 0, None
    while rate > 5.0:
        reaction = on_throttled(since, 1.0, WINDOW)
        assert reaction.factor is not None
        rate, cuts, since = lowered(rate, reaction.factor), cuts + 1, aimd.HOLD_WINDOWS * WINDOW
    assert cuts <= 4  # the gentle cut alone would take seven cuts, and as many pauses
    assert rate > 5.0 * aimd.RAPID_FACTOR


def test_the_rate_never_drops_below_the_floor() -> None:
    assert lowered(0.6, aimd.RAPID_FACTOR) == aimd.MIN_RATE


def test_back_at_the_limit_within_two_minutes_from_the_floor() -> None:
    # The additive steps (shares of the limit per second): slow for the probe, then fast.
    deficit = 1.0 - aimd.MIN_RATE / 10
    seconds = aimd.PROBE_SECONDS + (deficit - aimd.SLOW_STEP * aimd.PROBE_SECONDS) / aimd.FAST_STEP
    assert seconds < 120
    half = aimd.PROBE_SECONDS + (0.5 - aimd.SLOW_STEP * aimd.PROBE_SECONDS) / aimd.FAST_STEP
    assert math.isclose(half, 48.8)
