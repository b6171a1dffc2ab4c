"""When to refresh and when to retry: pure functions of ttl, clock and jitter.

Kept apart from the refresher thread so they can be tested on an injected
clock and random source, with no waiting at all: a test of a 15-minute
backoff takes microseconds and cannot be flaky.
"""

from __future__ import annotations

from collections.abc import Callable

REFRESH_FROM = 0.60  # README: supervision, refresh and rotation: re-issue after a jittered 60-75% of the ttl
REFRESH_TO = 0.75
RETRY_BASE = 0.5  # first retry wait before jitter, seconds
RETRY_MAX = 10.0  # no wait grows past this: once a token has expired, recovery should be quick
RETRY_MIN = 0.05  # never spin: even with almost no time left, wait this much
# No credential is re-issued sooner than this after the last issue, whatever its
# ttl (or --vault-poll) says: a ttl of 0 once meant a re-issue loop at 20,000/s.
MIN_REFRESH_INTERVAL = 0.5

Random = Callable[[], float]  # returns a float in [0, 1)


def refresh_due(issued_at: float, ttl: float, rand: Random) -> float:
    """The moment to re-issue a credential: 60-75% of its ttl, jittered, and never sooner than the floor."""
    return issued_at + max(MIN_REFRESH_INTERVAL, ttl * (REFRESH_FROM + (REFRESH_TO - REFRESH_FROM) * rand()))


def poll_due(issued_at: float, poll_interval: float) -> float:
    """The moment to re-read a value that never expires (ttl None, or 0 from the server)."""
    return issued_at + max(MIN_REFRESH_INTERVAL, poll_interval)


def refresh_window_open(issued_at: float, ttl: float, now: float) -> bool:
    """Whether a credential may already be refreshed (past 60% of its ttl).

    Credentials whose windows are open are batched into one request.
    """
    return now >= issued_at + ttl * REFRESH_FROM


def backoff(failures: int, rand: Random, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """The one backoff policy, for start-up retries (refresh/retry.py) and refresh retries alike.

    Exponential steps from `base`, doubling per failure up to `cap`, jittered
    between half and all of the step (so a fleet that failed together does not
    retry together, yet never retries at once), and never shorter than the
    server's Retry-After.
    """
    step = min(cap, base * 2 ** max(0, failures - 1))
    delay = step * (0.5 + 0.5 * rand())
    return delay if retry_after is None else max(delay, retry_after)


def retry_delay(failures: int, now: float, expires_at: float, rand: Random, retry_after: float | None = None) -> float:
    """How long to wait before retrying a failed refresh.

    `backoff` from RETRY_BASE, at most a quarter of the time left before the
    old token expires, so a short outage never outlives a token that could
    have been saved; once expired, plain capped backoff.
    """
    delay = backoff(failures, rand, base=RETRY_BASE, cap=RETRY_MAX, retry_after=retry_after)
    left = expires_at - now
    if left > 0:
        delay = min(delay, left / 4)
    return max(RETRY_MIN, min(delay, RETRY_MAX))
