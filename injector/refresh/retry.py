"""Start-up retries: the one backoff policy (refresh/schedule.py), honouring Retry-After.

Imported only after a first attempt has failed.  The sleep, the clock and
the random source are injectable for tests, and `stop` (an Event) cancels
the wait.  A plain loop: the policy is `schedule.backoff`, shared with the
refresher's retries, so there is nothing left for a retry library to do.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from injector.errors import TransientError, UnavailableError
from injector.log import log
from injector.refresh.schedule import Random, backoff
from injector.settings.references import Credential

STARTUP_BASE = 0.25  # seconds; waits grow 0.25, 0.5, 1, 2, ... jittered (schedule.backoff)
STARTUP_MAX = 5.0


def retry_after_failure(
    attempt: Callable[[], list[Credential]],
    failure: TransientError,
    *,
    deadline: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
    stop: threading.Event | None = None,
    started: float | None = None,
    rand: Random = random.random,
) -> list[Credential]:
    """Run `attempt` again until it succeeds, fails for good, or `deadline` passes.

    `failure` is the transient error of the attempt already made (at
    `started`, by `clock`).  Giving up raises UnavailableError (exit 69)
    naming the last failure, how long was waited and --startup-timeout.
    """
    began = clock() if started is None else started
    stop_event = stop or threading.Event()
    sleep = sleep or stop_event.wait
    last, failures = failure, 1
    while not stop_event.is_set() and clock() < deadline:
        log.warning(f"{what}: {last.message}; retrying", attempt=failures + 1)
        wait = backoff(failures, rand, base=STARTUP_BASE, cap=STARTUP_MAX, retry_after=last.retry_after)
        sleep(max(0.0, min(wait, deadline - clock())))
        # The last wait is cut to end at the deadline: an attempt made then has no time left, and its
        # "timed out after 0 s" would hide the real trouble (refused, 503...). Report that instead.
        if stop_event.is_set() or clock() >= deadline:
            break
        try:
            return attempt()
        except TransientError as exc:
            last, failures = exc, failures + 1
    raise _give_up(what, last, clock() - began, deadline - began)


def _give_up(what: str, last: TransientError, waited: float, timeout: float) -> UnavailableError:
    return UnavailableError(
        f"{what}: gave up after the start-up timeout ({waited:.1f} s waited, --startup-timeout {timeout:g}; "
        f"raise it if the server needs longer to come up): {last.message}"
    )
