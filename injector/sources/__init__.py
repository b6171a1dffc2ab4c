"""Where credentials come from.  The only package that speaks HTTP.

A source has: `issue(references) -> [Credential]` (all or nothing, in the
order asked), `renew_session()`, `session_ttl`, `session_expires_at`,
`revoke(lease_ids)` and `close()`.  `proxy.ProxySource` speaks protocol v1,
`openbao.OpenBaoSource` the OpenBao/Vault API; `Combined` serves references
of both kinds in one run.
"""

from __future__ import annotations

from collections.abc import Sequence

from injector.references import Credential, Reference


class Combined:
    """Routes each reference to the source for its scheme."""

    def __init__(self, by_scheme: dict[str, object]) -> None:
        self._by_scheme = by_scheme
        self._sources = list(dict.fromkeys(by_scheme.values()))  # each once, in order
        self._owner: dict[str, object] = {}  # lease id -> the source that issued it

    def _source(self, reference: Reference):
        return self._by_scheme[reference.scheme]

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        issued: dict[str, Credential] = {}
        for source in self._sources:
            mine = [r for r in references if self._source(r) is source]
            if mine:
                for credential in source.issue(mine):  # type: ignore[attr-defined]
                    issued[credential.name] = credential
                    if credential.lease_id:
                        self._owner[credential.lease_id] = source
        return [issued[r.name] for r in references]

    @property
    def session_ttl(self) -> float:
        return min(s.session_ttl for s in self._sources)  # type: ignore[attr-defined]

    @property
    def session_expires_at(self) -> float:
        return min(s.session_expires_at for s in self._sources)  # type: ignore[attr-defined]

    def renew_session(self) -> None:
        # One schedule serves both: the shorter session sets it, the other is renewed early.
        for source in self._sources:
            source.renew_session()  # type: ignore[attr-defined]

    def revoke(self, lease_ids: Sequence[str]) -> None:
        for source in self._sources:
            source.revoke([lease for lease in lease_ids if self._owner.get(lease) is source])  # type: ignore[attr-defined]

    def close(self) -> None:
        for source in self._sources:
            source.close()  # type: ignore[attr-defined]
