"""Refresh timing on an injected clock: no real waiting (the tenacity habit).

SPEC section 5: re-issue after a jittered 60-75% of the granted ttl; a failed
refresh is retried with backoff, each wait at most a quarter of the time left
before the old token expires; the old token stays until then.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from injector.errors import RefusedError, TransientError
from injector.refresh.ledger import Ledger
from injector.refresh.refresher import Refresher
from injector.refresh.schedule import RETRY_MAX, RETRY_MIN, refresh_due, retry_delay
from injector.settings.references import Credential, Reference


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Issues `<name>-<n>` tokens with a fixed ttl; can be told to fail."""

    def __init__(self, clock: Clock, ttl: float = 100.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.calls: list[list[str]] = []
        self.renewals = 0
        self.failure: Exception | None = None
        self.same_value = False
        self.counter = 0
        self.session_ttl = 1000.0
        self.session_expires_at = clock() + 1000.0

    def issue(self, references):
        self.calls.append([r.name for r in references])
        if self.failure:
            raise self.failure
        self.counter += 1
        suffix = 0 if self.same_value else self.counter
        return [
            Credential(r.name, f"{r.name}-{suffix}", self.ttl, self.clock(), f"lease-{r.name}-{self.counter}")
            for r in references
        ]

    def renew_session(self) -> None:
        self.renewals += 1
        self.session_expires_at = self.clock() + self.session_ttl


def make(clock: Clock, names=("A",), ttl: float = 100.0, rand=lambda: 0.5):
    source = FakeSource(clock, ttl)
    references = [Reference(name, "s/" + name.lower()) for name in names]
    ledger = Ledger(source.issue(references))
    source.calls.clear()
    events: dict[str, list] = {"rotated": [], "expired": [], "delivered": []}
    refresher = Refresher(
        references,
        source,
        ledger,
        deliver=lambda ref, cred: events["delivered"].append(cred.value),
        on_rotated=events["rotated"].append,
        on_expired=events["expired"].append,
        clock=clock,
        rand=rand,
    )
    return refresher, source, ledger, events


@given(st.floats(0, 0.999999), st.floats(1, 1e6), st.floats(0, 1e6))
def test_refresh_due_is_between_60_and_75_percent(rand: float, ttl: float, issued_at: float) -> None:
    due = refresh_due(issued_at, ttl, lambda: rand)
    assert issued_at + 0.6 * ttl - 1e-6 <= due <= issued_at + 0.75 * ttl + 1e-6


@given(st.integers(1, 50), st.floats(0.001, 1e4), st.floats(0, 0.999999), st.one_of(st.none(), st.floats(0, 3600)))
def test_retry_wait_never_exceeds_a_quarter_of_the_time_left(failures, left, rand, retry_after) -> None:
    delay = retry_delay(failures, 0.0, left, lambda: rand, retry_after)
    assert delay <= max(RETRY_MIN, left / 4) + 1e-9
    assert delay >= RETRY_MIN


def test_retry_wait_grows_and_honours_retry_after_when_time_allows() -> None:
    delays = [retry_delay(n, 0.0, 10_000.0, lambda: 0.999) for n in (1, 2, 3, 4)]
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert retry_delay(1, 0.0, 10_000.0, lambda: 0.0, retry_after=7.0) == 7.0
    assert retry_delay(1, 0.0, 8.0, lambda: 0.0, retry_after=7.0) == 2.0  # a quarter of 8 s wins


def test_after_expiry_retries_continue_with_capped_backoff() -> None:
    assert RETRY_MIN <= retry_delay(40, 100.0, 50.0, lambda: 0.999) <= RETRY_MAX


def test_refresher_sleeps_until_due_then_reissues_and_rotates() -> None:
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=100.0, rand=lambda: 0.5)
    assert refresher.next_wake() == clock.now + 67.5  # 60% + half of the 15% jitter window
    clock.now += 67.5
    refresher.tick(clock.now)
    assert source.calls == [["A"]]
    assert ledger.current("A").value == "A-2"
    assert events["rotated"] == [["A"]]
    assert events["delivered"] == ["A-2"]
    assert refresher.next_wake() == clock.now + 67.5


def test_same_value_is_not_a_rotation() -> None:
    clock = Clock()
    refresher, source, ledger, events = make(clock)
    source.same_value = True
    ledger.replace(source.issue([Reference("A", "s/a")])[0])  # current value is now A-0
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)
    assert events["rotated"] == []


def test_failed_refresh_keeps_the_old_token_and_retries_before_expiry() -> None:
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=100.0)
    original = ledger.current("A")
    source.failure = TransientError("proxy down")
    clock.now = refresher.next_wake()
    waits = []
    while clock.now < original.expires_at:
        refresher.tick(clock.now)
        assert ledger.current("A") is original, "a failed refresh never replaces or removes the token"
        wake = refresher.next_wake()
        left = original.expires_at - clock.now
        assert wake - clock.now <= max(RETRY_MIN, left / 4) + 1e-9
        waits.append(wake - clock.now)
        clock.now = wake
    assert len(waits) >= 3
    assert events["expired"] == []
    refresher.tick(clock.now)  # at expiry
    assert events["expired"] == [["A"]]
    refresher.tick(clock.now + 1)
    assert events["expired"] == [["A"]], "expiry is reported once"
    source.failure = None
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)
    assert ledger.current("A").value != original.value
    assert events["rotated"] == [["A"]]


def test_refused_refresh_is_retried_like_a_transient_one() -> None:
    clock = Clock()
    refresher, source, ledger, _ = make(clock)
    source.failure = RefusedError("403")
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)
    assert refresher.next_wake() < ledger.current("A").expires_at


def test_credentials_in_their_window_are_batched() -> None:
    clock = Clock()
    jitter = iter([0.0, 0.9])  # A due at 60%, B at 73.5%
    refresher, source, _, events = make(clock, names=("A", "B"), rand=lambda: next(jitter, 0.5))
    clock.now = refresher.next_wake()  # A's due time; B is past its 60% mark too
    refresher.tick(clock.now)
    assert source.calls == [["A", "B"]]
    assert events["rotated"] == [["A", "B"]]


def test_session_is_renewed_on_the_same_schedule() -> None:
    clock = Clock()
    refresher, source, _, _ = make(clock, ttl=10_000.0)
    clock.now = refresher.next_wake()
    assert clock.now == 1000.0 + 675.0  # 67.5% of the 1000 s session
    refresher.tick(clock.now)
    assert source.renewals == 1 and source.calls == []


def test_ledger_keeps_superseded_leases_until_they_expire() -> None:
    clock = Clock()
    refresher, _, ledger, _ = make(clock, ttl=100.0)
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)
    assert ledger.live_lease_ids(clock.now) == ["lease-A-1", "lease-A-2"]
    assert ledger.live_lease_ids(1000.0 + 100.0) == ["lease-A-2"]


def test_an_unexpected_error_is_a_failed_refresh_not_the_end_of_refreshing() -> None:
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=100.0)
    original = ledger.current("A")
    source.failure = RuntimeError("a bug somewhere below")
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)  # must not raise: in the thread, that would end refreshing for good
    assert ledger.current("A") is original
    assert clock.now < refresher.next_wake() < original.expires_at, "retried before the token expires"
    source.failure = None
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)
    assert ledger.current("A").value != original.value
    assert events["rotated"] == [["A"]]


def test_an_unexpected_error_in_session_renewal_is_retried() -> None:
    clock = Clock()
    refresher, source, _, _ = make(clock, ttl=10_000.0)

    def broken() -> None:
        raise RuntimeError("a bug")

    source.renew_session = broken  # type: ignore[method-assign]
    clock.now = refresher.next_wake()
    refresher.tick(clock.now)  # must not raise
    retry_at = refresher.next_wake()
    # Re-scheduled: later than now (not a busy loop on the same due time), before the session ends.
    assert clock.now < retry_at < source.session_expires_at
    clock.now = retry_at
    refresher.tick(clock.now)
    assert refresher.next_wake() > retry_at, "each failure moves the retry on"


def test_a_pause_longer_than_the_ttl_refreshes_before_judging_expiry() -> None:
    """Issue 11: after SIGSTOP or `podman pause` past the ttl, the refresh due on waking comes first."""
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=100.0)
    original = ledger.current("A")
    clock.now = original.expires_at + 50  # woke long after the token expired
    refresher.tick(clock.now)
    assert source.calls == [["A"]]
    assert ledger.current("A").value != original.value
    assert events["expired"] == [], "a token replaced on waking never expired"


def test_a_pause_whose_refresh_fails_is_still_an_expiry() -> None:
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=100.0)
    source.failure = TransientError("proxy down")
    clock.now = ledger.current("A").expires_at + 50
    refresher.tick(clock.now)
    assert source.calls == [["A"]], "the refresh is tried first"
    assert events["expired"] == [["A"]]


# --- start-up retries: the same policy (schedule.backoff), on an injected clock -------------------------------------


def test_backoff_doubles_jitters_and_honours_retry_after() -> None:
    from injector.refresh.schedule import backoff

    assert [backoff(n, lambda: 0.999999, base=0.5, cap=10.0) for n in (1, 2, 3, 6)] == pytest.approx([0.5, 1, 2, 10])
    assert backoff(3, lambda: 0.0, base=0.5, cap=10.0) == 1.0  # never less than half the step
    assert backoff(1, lambda: 0.0, base=0.5, cap=10.0, retry_after=7.0) == 7.0


def test_start_up_retries_use_the_shared_policy_until_the_deadline() -> None:
    """Waits come from schedule.backoff (Retry-After honoured), the last is cut to the deadline, and giving
    up names the last real failure and --startup-timeout."""
    from injector.errors import UnavailableError
    from injector.refresh.retry import retry_after_failure

    clock = Clock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    def attempt() -> list[Credential]:
        raise TransientError("proxy answered 503", retry_after=3.0 if len(waits) == 1 else None)

    start = clock()
    with pytest.raises(UnavailableError) as caught:
        retry_after_failure(
            attempt,
            TransientError("connection refused"),
            deadline=start + 5.0,
            what="fetching credentials",
            clock=clock,
            sleep=sleep,
            started=start,
            rand=lambda: 0.0,
        )
    assert waits[:2] == [0.125, 3.0]  # half of the 0.25 s step, then the server's Retry-After
    assert clock() == pytest.approx(start + 5.0)  # the last wait ended at the deadline, not past it
    assert "proxy answered 503" in str(caught.value) and "--startup-timeout 5" in str(caught.value)


def test_start_up_retry_returns_the_first_success() -> None:
    from injector.refresh.retry import retry_after_failure

    clock = Clock()
    answers: list[object] = [TransientError("timed out"), ["ok"]]

    def attempt() -> list[Credential]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    got = retry_after_failure(
        attempt,
        TransientError("refused"),
        deadline=clock() + 60,
        what="x",
        clock=clock,
        sleep=lambda s: setattr(clock, "now", clock.now + s),
        rand=lambda: 0.5,
    )
    assert got == ["ok"] and not answers


def test_stop_waits_for_the_rotation_callback_in_flight() -> None:
    """The templates are rendered in on_rotated: once stop() returns the clean-up removes the files,
    so no render may still be writing one (it would be left behind, or written after the clean-up)."""
    import threading

    clock = Clock()
    refresher, _, _, _ = make(clock)
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def rendering(names: list[str]) -> None:
        entered.set()
        release.wait(60)
        order.append("rendered")

    refresher._on_rotated = rendering
    clock.now = refresher.next_wake()
    ticking = threading.Thread(target=refresher.tick, args=(clock.now,))
    ticking.start()
    assert entered.wait(60), "the refresh rotated A"
    stopping = threading.Thread(target=lambda: (refresher.stop(timeout=0), order.append("stopped")))
    stopping.start()
    stopping.join(2)  # room for a stop() that does not wait for the render to return at once
    release.set()
    ticking.join(60)
    stopping.join(60)
    assert order == ["rendered", "stopped"]


def test_a_rotation_found_after_stop_is_not_acted_on() -> None:
    """Stopping: the command is gone and the files are about to be removed, so nothing is rendered."""
    clock = Clock()
    refresher, _, ledger, events = make(clock)
    clock.now = refresher.next_wake()
    refresher._deliver = lambda reference, credential: refresher._stop.set()  # stop() begins mid-refresh
    refresher.tick(clock.now)
    assert ledger.current("A").value == "A-2", "the new token is current (and its lease revoked at exit)"
    assert events["rotated"] == []


def test_a_refresh_answered_after_stop_records_its_lease_and_delivers_nothing() -> None:
    """stop() may not wait for ever: a refresh answered after it is recorded (revoked at exit), never delivered."""
    clock = Clock()
    refresher, source, ledger, events = make(clock, ttl=10.0)
    refresher.stop()
    refresher.stop()  # a second stop returns at once (no deadlock on the delivery lock)
    clock.now += 9.0
    refresher.tick(clock())
    assert source.calls == [["A"]], "the refresh was asked for"
    assert events["delivered"] == [], "nothing delivered once stopped"
    assert f"lease-A-{source.counter}" in ledger.live_lease_ids(clock()), "its lease is still revoked at exit"
