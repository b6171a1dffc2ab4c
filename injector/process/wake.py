"""The signal our own threads send the main thread to wake it.

The main thread of `run` and `sidecar` sleeps in sigwaitinfo (signals are
taken synchronously, as tini does); a refresher that needs it to act (a
restart, a stop on expiry) queues the request and sends this.  A real-time
signal, so it queues and nothing outside uses it by default.
"""

from __future__ import annotations

import signal
import threading

WAKE = signal.SIGRTMIN


def wake(main_thread: int) -> None:
    """Wake `main_thread` (a threading.get_ident() value) from sigwaitinfo."""
    signal.pthread_kill(main_thread, WAKE)


def main_thread_id() -> int:
    return threading.get_ident()
