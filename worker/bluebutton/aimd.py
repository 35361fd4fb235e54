"""The adaptive rate's decisions (AIMD, as TCP's congestion window), pure.

CMS's throttle sits at an edge whose limit is not announced and may be lower than
``BB_RATE_LIMIT`` (FACTS.md, Errors and limits), so a 429 is the only sign of it. What a
429 does, given how long ago the app's rate was last cut (:func:`on_throttled`):

- within ``HOLD_WINDOWS`` windows of the last cut it is the same signal (the edge's window
  still holds requests sent before the cut, and refuses them): the rate stays;
- a first refusal after that cuts the rate by ``DECREASE_FACTOR`` (the rate then saws
  between this share of the edge's limit and the limit; 0.95 proved too little on a loaded
  machine, where the fast step overshoots the edge by more than 5% before its first 429);
- a refusal soon after a cut (within ``RAPID_WINDOWS``) says the cut was not enough: the
  rate is still well above the edge's, so it comes down harder (``RAPID_FACTOR``), and the
  descent from the configured limit to half of it takes four cuts, not seven;
- a ``Retry-After`` pauses every replica for its length (every one: the server may count
  what arrives while it runs).

Then the rate grows back additively (the Lua below), never above the limit: slowly for
``PROBE_SECONDS`` (the edge's limit is near; creeping up keeps 429s rare), then fast (the
edge has not refused for a while: CMS may admit more), so it is back at the limit within two
minutes of CMS admitting it (from half the limit in 30 + 19 s, from ``MIN_RATE`` in 67 s, so
that a refusal or two on the way, from requests bunched at the server, still leave it back
within two minutes).

Why Retry-After cost throughput: each pause stops the app for a whole second (the edge
rounds its wait up), about the edge's rate in requests. While the rate came down from the
limit by 0.9 a cut, one cut per two windows, 429s and their pauses followed each other for
fifteen seconds (3.1 of 5 requests/s used); and creeping back up by 0.2% of the limit a
second found the edge again, with a pause, every 25 s. Cutting harder when a cut was not
enough halves the descent; creeping at 0.1% for the 30 s probe, after a cut of 0.9, spaces
the steady state's 429s about 30 s apart.

What backs this: FACTS.md (Errors and limits) says the limit that bites is the edge's, its
accounting and its ``Retry-After`` not public, and to slow the whole app down on bare 429s.
BB2's own throttle (DRF's SimpleRateThrottle on FHIR views: apps/dot_ext/throttling.py:7,
apps/fhir/bluebutton/views/generic.py:49; TOKEN_THROTTLE_RATE, default 100000/s,
hhs_oauth_server/settings/base_ec2.py:233) sends ``Retry-After`` as whole seconds, rounded
down (DRF 3.16.1 rest_framework/views.py:91-92), so it is honoured as given. Not knowable:
the edge's window, whether it rounds its wait up, how its 429s bunch. The factors, windows
and steps here are tuned against the emulator's edge (:mod:`worker.emulator.edge`), a
model of it, not CMS's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DECREASE_FACTOR: Final = 0.9
# A refusal within this many windows of the last cut: the cut was not enough.
RAPID_WINDOWS: Final = 4
RAPID_FACTOR: Final = 0.8
# Cuts at most once per this many windows: the edge's window still holds the requests of
# the second before the cut, and their refusals say nothing new.
HOLD_WINDOWS: Final = 2
# Additive increase, as shares of the limit per second: slow for PROBE_SECONDS after a cut
# (a tenth of an edge at half the limit takes 50 s: the probe ends first, and the fast step
# finds the edge: a 429 every 30 s or so), then fast.
SLOW_STEP: Final = 1 / 1000
FAST_STEP: Final = 1 / 40
PROBE_SECONDS: Final = 30.0
# Never slower than this (requests/s): a budget cut to nothing would never learn it recovered.
MIN_RATE: Final = 0.5


@dataclass(frozen=True)
class Reaction:
    """What one 429 does to the app's shared budget: the factor its rate is cut by (None:
    not cut) and the seconds every replica pauses (0: none)."""

    factor: float | None
    pause: float


def on_throttled(since_cut: float | None, retry_after: float | None, window: float) -> Reaction:
    """The reaction to a 429 that came ``since_cut`` seconds after the rate's last cut
    (None: the rate is whole, no cut in force), with its ``Retry-After`` (None: bare)."""
    pause = retry_after or 0.0
    if since_cut is not None and since_cut < HOLD_WINDOWS * window:
        return Reaction(None, pause)
    rapid = since_cut is not None and since_cut < RAPID_WINDOWS * window
    return Reaction(RAPID_FACTOR if rapid else DECREASE_FACTOR, pause)


def lowered(rate: float, factor: float) -> float:
    """The rate after a cut by ``factor``, never below MIN_RATE."""
    return max(MIN_RATE, rate * factor)


# The adaptive rate in Redis, shared by the budget's scripts: the key holds the rate the
# last cut set, its PTTL the time left until the rate is back at the limit (so the time
# since the cut follows, and the key lapses exactly when the rate is whole again). ``slow``
# and ``fast`` are the additive steps (requests/s per second) before and after ``probe``.
ADAPTIVE_LUA: Final = """
local function recovery(limit, base, slow, fast, probe)
  local deficit = limit - base
  if deficit <= slow * probe then return deficit / slow end
  return probe + (deficit - slow * probe) / fast
end
local function adaptive(key, limit, slow, fast, probe)
  local left = redis.call('PTTL', key)
  if left <= 0 then return limit, nil end
  local base = tonumber(redis.call('GET', key))
  local since = recovery(limit, base, slow, fast, probe) - left / 1000
  local rate = base + slow * math.min(since, probe) + fast * math.max(0, since - probe)
  return math.min(limit, rate), since
end
"""
