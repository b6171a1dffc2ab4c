"""The log redactor under threads (issue 19, found by review): a secret protected while another
thread redacts is redacted from then on.

The lazily sorted list of old was rebuilt by whichever thread redacted first
after a protect(): a redacting thread that had sorted the set just before
another thread's protect() stored its list after it, without the newest secret,
until the next protect().  The interleaving is forced here, not hoped for.
"""

from __future__ import annotations

import threading

from injector.log import Logger


class _SetThatLetsAnotherThreadIn(set):
    """Iterating it (sorting it) first lets another thread protect a secret, then yields what it held."""

    def __init__(self, logger: Logger, secret: str) -> None:
        super().__init__()
        self._logger, self._secret, self.armed = logger, secret, False

    def __iter__(self):  # type: ignore[override]
        held = list(super().__iter__())
        if self.armed:
            self.armed = False
            other = threading.Thread(target=self._logger.protect, args=(self._secret,))
            other.start()
            other.join()
        return iter(held)


def test_a_secret_protected_while_another_thread_redacts_is_never_lost() -> None:
    logger = Logger()
    newest = "sk_live_PROTECTED_MEANWHILE_42"
    logger.protect("first-secret-value")
    racy = _SetThatLetsAnotherThreadIn(logger, newest)
    racy.update(logger._protected)
    logger._protected = racy
    logger.protect("second-secret-value")  # marks the ordered list stale (old) / rebuilds it (new)
    racy.armed = True
    logger.redact("a line")  # (old) sorts here, and another thread protects `newest` meanwhile
    racy.armed = False
    logger.protect(newest)
    assert newest not in logger.redact(f"token {newest}"), "the newest secret was lost by the redactor"
    assert "first-secret-value" not in logger.redact("first-secret-value")


def test_protect_and_redact_from_many_threads_keep_every_secret() -> None:
    logger = Logger()
    secrets = [f"secret-{i:04d}-value" for i in range(200)]
    stop = threading.Event()

    def redacting() -> None:
        while not stop.is_set():
            logger.redact("nothing here")

    readers = [threading.Thread(target=redacting) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for secret in secrets:
            logger.protect(secret)
            assert secret not in logger.redact(secret), secret
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert all(secret not in logger.redact(" ".join(secrets)) for secret in secrets)
