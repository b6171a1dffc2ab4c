"""Serving stronghold:// and vault:// references in one run: each to the source for its scheme."""

from __future__ import annotations

from collections.abc import Sequence

from injector.settings.references import Credential, Reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.interface import Source


class Combined:
    """Routes each reference to the source for its scheme."""

    def __init__(self, by_scheme: dict[str, Source]) -> None:
        self._by_scheme = by_scheme
        self._sources = list(dict.fromkeys(by_scheme.values()))  # each once, in order
        self._owner: dict[str, Source] = {}  # lease id -> the source that issued it

    def _source(self, reference: Reference) -> Source:
        return self._by_scheme[reference.scheme]

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        """All or nothing: when one source fails, the new leases the others gave are revoked."""
        issued: dict[str, Credential] = {}
        new: dict[Source, list[str]] = {}  # leases first seen in this call (a renewed one is still in use)
        try:
            for source in self._sources:
                mine = [r for r in references if self._source(r) is source]
                if mine:
                    for credential in source.issue(mine):
                        issued[credential.name] = credential
                        if credential.lease_id and credential.lease_id not in self._owner:
                            self._owner[credential.lease_id] = source
                            new.setdefault(source, []).append(credential.lease_id)
        except BaseException:
            for source, lease_ids in new.items():
                source.revoke(lease_ids)  # best effort, bounded, never raises
            raise
        return [issued[r.name] for r in references]

    @property
    def session_ttl(self) -> float:
        return min(s.session_ttl for s in self._sources)

    @property
    def session_expires_at(self) -> float:
        return min(s.session_expires_at for s in self._sources)

    def renew_session(self) -> None:
        # One schedule serves both: the shorter session sets it, the other is renewed early.
        for source in self._sources:
            source.renew_session()

    def revoke(self, lease_ids: Sequence[str]) -> int:
        return sum(
            source.revoke([lease for lease in lease_ids if self._owner.get(lease) is source])
            for source in self._sources
        )
