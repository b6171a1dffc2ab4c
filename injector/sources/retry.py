"""Start-up retries: exponential backoff with full jitter, honouring Retry-After.

Imported only after a first attempt has failed: the retry machinery
(tenacity, ~45 ms of imports) is not paid for on a start that succeeds at
once.  The sleep and the clock are injectable for tests, and `stop` (an
Event) cancels the wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import tenacity

from injector.errors import TransientError, UnavailableError
from injector.log import log
from injector.settings.references import Credential

BACKOFF_MULTIPLIER = 0.25  # seconds; waits grow 0.25, 0.5, 1, 2, ... with full jitter
BACKOFF_MAX = 5.0


class _Attempts:
    """The one field of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


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
) -> list[Credential]:
    """Run `attempt` again until it succeeds, fails for good, or `deadline` passes.

    `failure` is the transient error of the attempt already made (at
    `started`, by `clock`).  Giving up raises UnavailableError (exit 69)
    naming the last failure, how long was waited and --startup-timeout.
    """
    began = clock() if started is None else started
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
        # tenacity counts from its own first call; one failure came before it.
        return wait_after(state.attempt_number + 1, state.outcome.exception() if state.outcome else None)

    def give_up(state: tenacity.RetryCallState) -> bool:
        return stop_event.is_set() or clock() >= deadline

    def announce(error: BaseException | None, next_attempt: int) -> None:
        if isinstance(error, TransientError):
            log.warning(f"{what}: {error.message}; retrying", attempt=next_attempt)

    def pause(seconds: float) -> None:
        sleep(seconds)  # (Event.wait returns why it woke; tenacity wants nothing back)

    if clock() >= deadline:
        raise _give_up(what, failure, clock() - began, deadline - began)
    announce(failure, 2)
    sleep(wait_after(1, failure))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=wait,
        stop=give_up,
        sleep=pause,
        before_sleep=lambda state: announce(
            state.outcome.exception() if state.outcome else None, state.attempt_number + 2
        ),
        reraise=True,
    )
    last_failure = failure

    def attempt_in_time() -> list[Credential]:
        # The last wait is cut to end at the deadline: an attempt made then has no time left, and its
        # "timed out after 0 s" would hide the real trouble (refused, 503...). Report that instead.
        nonlocal last_failure
        if clock() >= deadline:
            raise last_failure
        try:
            return attempt()
        except TransientError as exc:
            last_failure = exc
            raise

    try:
        return retrying(attempt_in_time)
    except TransientError as last:
        raise _give_up(what, last, clock() - began, deadline - began) from None


def _give_up(what: str, last: TransientError, waited: float, timeout: float) -> UnavailableError:
    return UnavailableError(
        f"{what}: gave up after the start-up timeout ({waited:.1f} s waited, --startup-timeout {timeout:g}; "
        f"raise it if the server needs longer to come up): {last.message}"
    )
