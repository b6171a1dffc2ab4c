"""Keep credentials fresh: one scheduler thread, sleeping until the next due time.

Each credential is re-issued after a jittered 60-75% of its ttl (credentials
whose windows are already open ride along in the same request); the session
is renewed on the same schedule.  A failed refresh is retried with backoff,
each wait at most a quarter of the time left before the old token expires;
the old token stays in place until then (never revoked or deleted on a
failed refresh).  A new token replaces the old one only after a valid answer
and a successful delivery.

Sources and delivery are passed in as callables, so this module does no I/O
of its own and is tested with fakes on an injected clock.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence

from injector.errors import StrongholdError, TransientError
from injector.log import log
from injector.refresh.ledger import Ledger
from injector.refresh.schedule import poll_due, refresh_due, refresh_window_open, retry_delay
from injector.settings.references import Credential, Reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.interface import Source

UNEXPECTED_ERROR_PAUSE = 1.0  # seconds, after an exception no step expected
# How long stop() waits for a refresh in flight: as long as revoking at exit may
# take (sources/openbao.py's REVOKE_BUDGET), so its new leases are in the ledger
# before the session revokes them, and no delivery runs under the clean-up.
STOP_BUDGET = 3.0
MAX_SLEEP = 3600.0  # wake at least hourly, even with nothing due (static values, eternal sessions)


class Refresher:
    """The scheduler thread.  `stop()` ends it promptly, even mid-wait."""

    def __init__(
        self,
        references: Sequence[Reference],
        source: Source,
        ledger: Ledger,
        *,
        deliver: Callable[[Reference, Credential], None],
        on_rotated: Callable[[list[str]], None],
        on_expired: Callable[[list[str]], None],
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        poll_interval: float = 300.0,
    ) -> None:
        self._references = {reference.name: reference for reference in references}
        self._source = source
        self.ledger = ledger
        self._deliver = deliver
        self._on_rotated = on_rotated
        self._on_expired = on_expired
        self._clock = clock
        self._rand = rand
        self._poll_interval = poll_interval  # static values (no ttl) are re-read this often
        self._stop = threading.Event()
        # Held while delivering a refresh's result and while on_rotated acts on it (rendering the
        # templates); stop() takes it for good, so once stop() returns nothing is delivered or
        # rendered (no file written under the clean-up).
        self._delivering = threading.Lock()
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._expired: set[str] = set()
        for name in self._references:
            self._due[name] = self._due_for(ledger.current(name))
            self._failures[name] = 0
        self._session_failures = 0
        self._session_due = self._session_refresh_due()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="stronghold-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_BUDGET) -> None:
        """End the thread: wait (at most `timeout`) for a refresh in flight, then deliver nothing more.

        A refresh that outlives `timeout` (a server stalling past the budget)
        records its leases too late to be revoked; they expire on their own.  A render of
        the templates already under way is waited for (it is local work, bounded in size).
        """
        if self._stop.is_set():
            return  # stopped already (the lock below is held for good)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._delivering.acquire()  # never released: a refresh still in flight delivers nothing

    def run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            wake = self.next_wake()
            if wake > now:
                self._stop.wait(min(wake - now, MAX_SLEEP))
                continue
            try:
                self.tick(now)
            except Exception as exc:  # from a callback (delivery, on_rotated, on_expired): never end refreshing
                log.error(f"internal error in the refresher: {type(exc).__name__}; carrying on")
                self._stop.wait(UNEXPECTED_ERROR_PAUSE)  # do not spin if the same step fails again at once

    # -- one step, public for tests on an injected clock ----------------------

    def next_wake(self) -> float:
        times = [self._session_due, *self._due.values()]
        times += [self.ledger.current(n).expires_at for n in self._references if n not in self._expired]
        return min(times)

    def tick(self, now: float) -> None:
        """Refresh what is due first, then judge expiry.

        After a pause longer than the ttl (SIGSTOP, `podman pause`, a
        suspended laptop) every token looks expired on waking; the refresh
        that is due at the same moment usually succeeds, and only a token it
        could not replace has really expired (--on-expiry exit must not stop
        the command over a pause).
        """
        if self._session_due <= now:
            self._renew_session(now)
        due = [name for name, when in self._due.items() if when <= now]
        if due:
            self._refresh(self._batch(due, now), now)
        self._notice_expiry(self._clock())

    def _batch(self, due: list[str], now: float) -> list[str]:
        """The due credentials plus every one already in its refresh window."""
        batch = set(due)
        for name in self._references:
            credential = self.ledger.current(name)
            if (
                self._failures[name] == 0
                and credential.ttl is not None
                and refresh_window_open(credential.issued_at, credential.ttl, now)
            ):
                batch.add(name)
        return sorted(batch)

    def _refresh(self, names: list[str], now: float) -> None:
        references = [self._references[name] for name in names]
        try:
            credentials = self._source.issue(references)
            self.ledger.record_leases(credentials)  # first: revoked at exit, even if stopping now
            # Stopping: the command is gone and the files are about to be removed; the lock is
            # stop()'s for good then (never waited on here, so this thread cannot hang on it).
            if self._stop.is_set() or not self._delivering.acquire(blocking=False):
                return
            try:
                if self._stop.is_set():
                    return
                for reference, credential in zip(references, credentials, strict=True):
                    self._deliver(reference, credential)
            finally:
                self._delivering.release()
        except StrongholdError as exc:
            self._refresh_failed(names, now, exc)
            return
        except Exception as exc:  # a bug must not end refreshing for good: retry as after any failure
            self._refresh_failed(names, now, StrongholdError(f"internal error: {type(exc).__name__}"))
            return
        rotated = [c.name for c in credentials if self.ledger.replace(c)]
        for credential in credentials:
            self._failures[credential.name] = 0
            self._expired.discard(credential.name)
            self._due[credential.name] = self._due_for(credential)
        log.debug("credentials refreshed", names=",".join(names), rotated=len(rotated))
        if rotated:
            # Under the same lock as the delivery: on_rotated renders the --template files, and
            # once stop() returns the clean-up removes them, so no render may still be writing.
            with self._delivering:
                if not self._stop.is_set():  # stopping: the command is gone, the files about to go
                    self._on_rotated(rotated)

    def _refresh_failed(self, names: list[str], now: float, exc: StrongholdError) -> None:
        retry_after = getattr(exc, "retry_after", None)
        for name in names:
            self._failures[name] += 1
            expires_at = self.ledger.current(name).expires_at
            self._due[name] = now + retry_delay(self._failures[name], now, expires_at, self._rand, retry_after)
        emit = log.warning if isinstance(exc, TransientError) else log.error
        emit(f"refresh failed, keeping the current tokens: {exc.message}", names=",".join(names))

    def _notice_expiry(self, now: float) -> None:
        expired = self.ledger.expired(now)
        newly = [name for name in expired if name not in self._expired]
        for name in expired:
            if name in newly or self._failures[name]:
                log.error("token expired without a successful refresh", name=name)
        if newly:
            self._expired.update(newly)
            self._on_expired(newly)

    def _due_for(self, credential: Credential) -> float:
        if credential.ttl is None:
            return poll_due(credential.issued_at, self._poll_interval)
        return refresh_due(credential.issued_at, credential.ttl, self._rand)

    def _session_refresh_due(self) -> float:
        ttl = self._source.session_ttl
        if not math.isfinite(ttl) or ttl <= 0:
            return math.inf  # a session that never expires (e.g. a root token) is never renewed
        return refresh_due(self._source.session_expires_at - ttl, ttl, self._rand)

    def _renew_session(self, now: float) -> None:
        try:
            self._source.renew_session()
        except Exception as exc:  # StrongholdError, or a bug: either way retry, never end the thread
            self._session_failures += 1
            expires_at = self._source.session_expires_at
            self._session_due = now + retry_delay(
                self._session_failures, now, expires_at, self._rand, getattr(exc, "retry_after", None)
            )
            reason = exc.message if isinstance(exc, StrongholdError) else f"internal error: {type(exc).__name__}"
            log.warning(f"session renewal failed: {reason}")
            return
        self._session_failures = 0
        self._session_due = self._session_refresh_due()
