"""OpenBao / Vault over its HTTP API (README: OpenBao and Vault), behind the same interface
as the proxy source: issue, renew_session, revoke.

- `vault://<path>#<field>` is a GET of `/v1/<path>`; the field is taken from
  `data` (KV v2: `data.data`).  References to one path read it once.
- A value with a renewable lease is renewed (`sys/leases/renew`) on the
  refresher's schedule and read again once renewal stops paying off (max ttl);
  a value without a lease (KV) is static and re-read on the poll.
- `vault-token://?policies=a,b` mints a token with exactly those policies
  (`no_default_policy`), renewed by accessor and minted again at its max ttl.
- The client token is renewed (`auth/token/renew-self`) or obtained again by
  logging in; at exit leases and minted tokens are revoked, and the login
  token too when stronghold-init created it.

Three layers: `openbao_client` (addresses, fail-over, status -> exception),
`openbao_auth` (the client token) and this module (leases of the values
handed out).  Failures map to the same exceptions as protocol v1: 403 refused (77), 404 or a
missing field a configuration error (78) naming the variable, sealed,
standby, 429, 5xx and connection trouble transient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from injector.errors import (
    BrokenAnswerError,
    ConfigError,
    NotFoundError,
    RefusedError,
    StrongholdError,
    TransientError,
    UnavailableError,
)
from injector.log import log
from injector.settings.references import Credential, Reference, value_problem
from injector.sources.answers import answer_int, once_more_after_login
from injector.sources.openbao.auth import RENEWAL_WORTH_IT, TokenSession, VaultLogin
from injector.sources.openbao.client import OpenBaoClient, PermissionDeniedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.transport import Response, Transport

ACCESSOR_PREFIX = "accessor:"  # lease ids of minted tokens, so revoke knows which endpoint
REVOKE_BUDGET = 3.0  # seconds for all revocations at exit together


class _Lease:
    """What a refresh needs to know about a value it handed out."""

    def __init__(self, lease_id: str, renewable: bool, granted: float, values: dict[str, object]) -> None:
        self.lease_id = lease_id
        self.renewable = renewable
        self.granted = granted
        self.values = values  # field -> value (a path) or {"token": value} (a minted token)


class OpenBaoSource:
    """The source interface (sources/__init__.py) over OpenBao / Vault."""

    def __init__(
        self,
        transports: Sequence[Transport],
        login: VaultLogin,
        *,
        namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = OpenBaoClient(transports, namespace=namespace)
        self._token = TokenSession(self._client, login, clock)
        self._clock = clock
        self._leases: dict[str, _Lease] = {}  # path, or "token:<NAME>" for minted tokens

    # -- the session is the client token ---------------------------------------

    @property
    def session_ttl(self) -> float:
        return self._token.ttl

    @property
    def session_expires_at(self) -> float:
        return self._token.expires_at

    def login(self) -> None:
        self._token.login()

    def renew_session(self) -> None:
        self._token.renew()

    # -- credentials -----------------------------------------------------------

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        """Every reference, all or nothing; a 403 means logging in again, once."""

        def attempt() -> list[Credential]:
            self._token.ensure()
            return self._issue_once(references)

        return once_more_after_login(
            attempt,
            rejected=PermissionDeniedError,
            login=self._token.login if self._token.creates_token else None,
            refused=lambda exc: RefusedError(exc.message),
            note="OpenBao refused the token; logging in again",
        )

    def _issue_once(self, references: Sequence[Reference]) -> list[Credential]:
        """Every path read (or token minted) once; when one fails, the new leases of the others are revoked."""
        by_key: dict[str, list[Reference]] = {}
        for reference in references:
            key = reference.secret if reference.scheme == "vault" else f"token:{reference.name}"
            by_key.setdefault(key, []).append(reference)
        issued: dict[str, Credential] = {}
        fresh: dict[str, _Lease] = {}  # key -> a lease obtained by this call (not a renewal of one in use)
        try:
            for key, group in by_key.items():
                sent_at = self._clock()
                lease, is_new = self._refreshed_lease(key, group)
                if is_new:
                    fresh[key] = lease
                # 0 means "never expires" everywhere (as for the client token): re-read on the static poll.
                ttl = float(lease.granted) if lease.granted > 0 else None
                for reference in group:
                    value = _field(lease.values, reference)
                    log.protect(value)
                    issued[reference.name] = Credential(reference.name, value, ttl, sent_at, lease.lease_id or None)
        except BaseException:
            for key in fresh:
                self._leases.pop(key, None)
            self._revoke_leases([lease.lease_id for lease in fresh.values() if lease.lease_id])
            raise
        return [issued[reference.name] for reference in references]

    def _refreshed_lease(self, key: str, group: list[Reference]) -> tuple[_Lease, bool]:
        """Renew what can be renewed; otherwise read (or mint) again.  -> (lease, whether it is a new one)."""
        wanted = max((r.ttl or 0 for r in group), default=0)
        previous = self._leases.get(key)
        if previous is not None and previous.renewable and previous.lease_id:
            renewed = self._renew(previous, wanted, key)
            if renewed is not None:
                return renewed, False
        lease = self._mint(group[0]) if key.startswith("token:") else self._read(key, group)
        self._leases[key] = lease
        return lease, True

    def _renew(self, lease: _Lease, wanted: int, key: str) -> _Lease | None:
        increment = wanted or int(lease.granted)
        try:
            if lease.lease_id.startswith(ACCESSOR_PREFIX):
                body: dict[str, object] = {
                    "accessor": lease.lease_id[len(ACCESSOR_PREFIX) :],
                    "increment": f"{increment}s",
                }
                data = self._client.json(
                    self._client.request("POST", "auth/token/renew-accessor", body), "renew-accessor", key
                )
                granted = _answer_duration(data.get("auth"), "renewed token ttl")
            else:
                body = {"lease_id": lease.lease_id, "increment": increment}
                data = self._client.call("PUT", "sys/leases/renew", body, names=key)
                granted = answer_int(data.get("lease_duration"), "renewed lease_duration", minimum=0)
        except (UnavailableError, NotFoundError) as exc:
            if isinstance(exc, TransientError):
                raise
            log.info("lease could not be renewed; reading again", what=key)
            return None
        if granted < increment * RENEWAL_WORTH_IT:
            log.info("lease near its max ttl; reading again", what=key)
            return None
        return _Lease(lease.lease_id, lease.renewable, granted, lease.values)

    def _read(self, path: str, group: list[Reference]) -> _Lease:
        names = ", ".join(r.described for r in group)
        answer = self._client.request("GET", path)
        try:
            data = self._client.json(answer, path, names)
        except NotFoundError as exc:
            raise NotFoundError(exc.message + _kv2_hint(path, answer, certain=True)) from None
        except PermissionDeniedError as exc:
            raise PermissionDeniedError(exc.message + _kv2_hint(path, answer, certain=False)) from None
        body = data.get("data")
        if not isinstance(body, dict):
            raise BrokenAnswerError(f"{path}: the answer has no data object")
        if isinstance(body.get("data"), dict) and isinstance(body.get("metadata"), dict):
            body = body["data"]  # KV version 2
        lease_id = data.get("lease_id") or ""
        if not isinstance(lease_id, str):
            raise BrokenAnswerError(f"{path}: lease_id is not a string")
        duration = answer_int(data.get("lease_duration", 0), f"{path}: lease_duration", minimum=0)
        renewable = data.get("renewable") is True
        # Without a lease id the value is static (KV v1's lease_duration is only a hint).
        granted = duration if lease_id else 0
        return _Lease(lease_id, renewable, granted, body)

    def _mint(self, reference: Reference) -> _Lease:
        body: dict[str, object] = {
            "policies": list(reference.scopes),
            # `default` lets a token look itself up and renew itself; only on request.
            "no_default_policy": not reference.default_policy,
            "renewable": True,
            "display_name": f"stronghold-init-{reference.target.lower()}",
        }
        if reference.ttl:
            body["ttl"] = f"{reference.ttl}s"
        data = self._client.call("POST", "auth/token/create", body, names=reference.name)
        auth = data.get("auth")
        token = auth.get("client_token") if isinstance(auth, dict) else None
        accessor = auth.get("accessor") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(token, str) or not token or not isinstance(accessor, str):
            raise BrokenAnswerError(f"{reference.name}: token/create answer has no client_token or accessor")
        granted = answer_int(auth.get("lease_duration"), f"{reference.name}: token ttl", minimum=0)
        renewable = auth.get("renewable") is True
        return _Lease(ACCESSOR_PREFIX + accessor, renewable, granted, {"token": token})

    # -- exit ------------------------------------------------------------------

    def revoke(self, lease_ids: Sequence[str]) -> int:
        """Best effort within REVOKE_BUDGET seconds; never raises.  -> how many leases were revoked."""
        deadline = self._clock() + REVOKE_BUDGET
        revoked = self._revoke_leases(lease_ids, deadline)
        left = deadline - self._clock()
        if left > 0:
            self._token.revoke(left)
        log.debug("OpenBao leases revoked", leases=revoked)
        return revoked

    def _revoke_leases(self, lease_ids: Sequence[str], deadline: float | None = None) -> int:
        """Revoke leases and minted tokens until `deadline`.  -> how many were revoked."""
        if deadline is None:
            deadline = self._clock() + REVOKE_BUDGET
        revoked = 0
        for lease_id in lease_ids:
            left = deadline - self._clock()
            if left <= 0:
                log.warning("revocation budget spent; remaining leases expire on their own")
                break
            if lease_id.startswith(ACCESSOR_PREFIX):
                accessor = {"accessor": lease_id[len(ACCESSOR_PREFIX) :]}
                revoked += self._best_effort("POST", "auth/token/revoke-accessor", accessor, left)
            else:
                revoked += self._best_effort("PUT", "sys/leases/revoke", {"lease_id": lease_id}, left)
        return revoked

    def _best_effort(self, method: str, path: str, body: dict, timeout: float) -> bool:
        try:
            self._client.call(method, path, body, names="revoke", timeout=min(timeout, 2.0))
            return True
        except StrongholdError as exc:
            log.warning(f"OpenBao: {path} failed: {exc.message}")
            return False


def _answer_duration(auth: object, what: str) -> int:
    return answer_int(auth.get("lease_duration") if isinstance(auth, dict) else None, what, minimum=0)


def _field(values: dict, reference: Reference) -> str:
    if reference.scheme == "vault-token":
        return values["token"]
    if reference.field not in values:
        raise ConfigError(f"{reference.name}: no field {reference.field!r} at {reference.secret}")
    value = values[reference.field]
    if isinstance(value, bool):
        value = str(value).lower()  # as JSON writes it
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{reference.name}: field {reference.field!r} at {reference.secret} is not a string")
    problem = value_problem(value)
    if problem:
        raise BrokenAnswerError(f"{reference.name}: the value {problem}")
    return value


def _kv2_hint(path: str, answer: Response, *, certain: bool) -> str:
    """KV v2 reads `<mount>/data/<path>`: the commonest wrong path, worth a hint.

    OpenBao says so in a 404's warnings when the token may read the mount; a
    403 cannot tell, so the hint is then an `if`.
    """
    mount, _, rest = path.partition("/")
    if not rest or rest.startswith("data/"):
        return ""
    suggested = f"{mount}/data/{rest}"
    if certain:
        try:
            data = answer.json()
        except BrokenAnswerError:
            return ""
        warnings = data.get("warnings") if isinstance(data, dict) else None
        if not (isinstance(warnings, list) and any("versioned" in str(w) for w in warnings)):
            return ""
        return f"; {mount}/ is a KV v2 mount, whose paths read <mount>/data/<path>: vault://{suggested}#<field>"
    return f"; if {mount}/ is a KV v2 mount, its paths read <mount>/data/<path>: vault://{suggested}#<field>"
