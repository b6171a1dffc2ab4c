"""Start-up retries: exponential backoff with full jitter, honouring Retry-After.

The first attempt runs without importing tenacity (~45 ms of imports on a
path that usually succeeds first time); only a transient failure brings in
the retry machinery.  The sleep and the clock are injectable for tests, and
`stop` (an Event) cancels the wait at shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from injector.errors import TransientError, UnavailableError
from injector.log import log

T = TypeVar("T")

BACKOFF_MULTIPLIER = 0.25  # seconds; waits grow 0.25, 0.5, 1, 2, ... with full jitter
BACKOFF_MAX = 5.0


def with_startup_retry(
    attempt: Callable[[], T],
    *,
    timeout: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run `attempt` until it succeeds, a non-transient error, or `timeout` passes.

    Gives up with UnavailableError (exit 69) naming the last failure.
    """
    deadline = clock() + timeout
    try:
        return attempt()
    except TransientError as first:
        failure = first
    import tenacity

    stop_event = stop or threading.Event()
    sleep = sleep or stop_event.wait
    jitter = tenacity.wait_random_exponential(multiplier=BACKOFF_MULTIPLIER, max=BACKOFF_MAX)

    def wait_after(failures: int, error: BaseException | None) -> float:
        seconds = jitter(_Attempts(failures))  # type: ignore[arg-type]
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            seconds = max(seconds, retry_after)
        return max(0.0, min(seconds, deadline - clock()))

    def wait(state: tenacity.RetryCallState) -> float:
        # tenacity counts from this loop's start; one failure came before it.
        return wait_after(state.attempt_number + 1, state.outcome.exception() if state.outcome else None)

    def give_up(state: tenacity.RetryCallState) -> bool:
        return stop_event.is_set() or clock() >= deadline

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError):
            log.warning(f"{what}: {error.message}; retrying", attempt=state.attempt_number + 2)

    if clock() >= deadline:
        raise _give_up(what, timeout, failure)
    log.warning(f"{what}: {failure.message}; retrying", attempt=2)
    sleep(wait_after(1, failure))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=wait,
        stop=give_up,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except TransientError as last:
        raise _give_up(what, timeout, last) from None


class _Attempts:
    """The one field of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


def _give_up(what: str, timeout: float, last: TransientError) -> UnavailableError:
    return UnavailableError(f"{what}: gave up after {timeout:g}s: {last.message}")
