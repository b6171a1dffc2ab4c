"""Where credentials come from.  The only package that speaks HTTP.

    wiring.open_source(settings, references)   checked configuration -> a Source (no network yet)
    proxy.ProxySource                          protocol v1 (docs/protocol.md)
    openbao.OpenBaoSource                      OpenBao / Vault: openbao_client, openbao_auth under it
    combined.Combined                          both kinds of reference in one run
    answers                                    what the sources share (statuses, integers, log in again)

Every source has the interface below.  It is declared for the type checker
only: nothing is imported at run time for it (start-up pays for every import).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    from injector.settings.references import Credential, Reference

    class Source(Protocol):
        @property
        def session_ttl(self) -> float:
            """Seconds the current session (login) lasts; inf if it never expires."""

        @property
        def session_expires_at(self) -> float:
            """When the session ends, on time.monotonic()'s clock."""

        def issue(self, references: Sequence[Reference]) -> list[Credential]:
            """Every reference in the order asked, all or nothing; logs in first if needed."""

        def renew_session(self) -> None:
            """Renew the session, or log in again when it can no longer be renewed."""

        def revoke(self, lease_ids: Sequence[str]) -> int:
            """Best effort, bounded in time; never raises.  -> how many the server confirmed revoked."""
