"""The credentials a run holds now, and every lease it was ever given.

Shared by the modes (what the command's environment and /healthz read), the
refresher (which replaces values) and the lifecycle (which revokes every
live lease at the end); kept apart from the refresher so start-up does not
import the scheduling.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from injector.settings.references import Credential


class Ledger:
    """The current credential per reference, and every lease ever issued."""

    def __init__(self, credentials: Sequence[Credential]) -> None:
        self._lock = threading.Lock()
        self._current = {credential.name: credential for credential in credentials}
        self._leases: list[tuple[str, float]] = []
        self.record_leases(credentials)

    def record_leases(self, credentials: Sequence[Credential]) -> None:
        with self._lock:
            self._leases.extend((c.lease_id, c.expires_at) for c in credentials if c.lease_id)

    def current(self, name: str) -> Credential:
        with self._lock:
            return self._current[name]

    def values(self) -> dict[str, str]:
        with self._lock:
            return {name: credential.value for name, credential in self._current.items()}

    def replace(self, credential: Credential) -> bool:
        """Make `credential` current; True when its value differs (a rotation)."""
        with self._lock:
            old = self._current.get(credential.name)
            self._current[credential.name] = credential
            return old is None or old.value != credential.value

    def expired(self, now: float) -> list[str]:
        with self._lock:
            return sorted(name for name, c in self._current.items() if c.expires_at <= now)

    def live_lease_ids(self, now: float) -> list[str]:
        """Every lease not yet expired, superseded ones too (docs/protocol.md)."""
        with self._lock:
            return [lease for lease, expires_at in self._leases if expires_at > now]
