"""OpenBao / Vault over its HTTP API (SPEC section 9), behind the same interface
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

Failures map to the same exceptions as protocol v1: 403 refused (77), 404 or a
missing field a configuration error (78) naming the variable, sealed,
standby, 429, 5xx and connection trouble transient.
"""

from __future__ import annotations

import math
import os
import threading
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
from injector.references import Credential, Reference
from injector.transport import Response, Transport

TRANSIENT_STATUSES = frozenset({412, 429, 500, 502, 503, 504})
ACCESSOR_PREFIX = "accessor:"  # lease ids of minted tokens, so revoke knows which endpoint
REVOKE_BUDGET = 3.0  # seconds for all revocations at exit together
# A renewal that grants less than this share of what was asked means the
# lease is near its max ttl: read (or mint) again instead of renewing.
RENEWAL_WORTH_IT = 0.5


class _PermissionDeniedError(StrongholdError):
    """403: a policy refused, or the client token is no longer valid."""


class VaultLogin:
    """How to obtain a client token.  Credentials are read at each login."""

    def __init__(
        self,
        method: str,
        *,
        token: str | None = None,
        token_file: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        jwt_file: str | None = None,
        role: str | None = None,
        mount: str | None = None,
        read_file: Callable[[str, str], str],
    ) -> None:
        self.method = method
        self._token = token
        self._token_file = token_file
        self._role_id = role_id
        self._secret_id = secret_id
        self._jwt_file = jwt_file
        self._role = role
        self.mount = mount or {"approle": "approle", "jwt": "jwt"}.get(method, "token")
        self._read_file = read_file

    @property
    def creates_token(self) -> bool:
        """Whether logging in makes a new token (which we then revoke at exit)."""
        return self.method != "token"

    def static_token(self) -> str:
        if self._token_file:
            return self._read_file(self._token_file, "STRONGHOLD_VAULT_TOKEN_FILE")
        assert self._token is not None
        return self._token

    def body(self) -> dict[str, str]:
        if self.method == "approle":
            assert self._role_id is not None and self._secret_id is not None
            return {"role_id": self._role_id, "secret_id": self._secret_id}
        assert self._jwt_file is not None and self._role is not None
        return {"role": self._role, "jwt": self._read_file(self._jwt_file, "STRONGHOLD_VAULT_JWT_FILE")}


class _Lease:
    """What a refresh needs to know about a value it handed out."""

    def __init__(self, lease_id: str, renewable: bool, granted: float, values: dict[str, str]) -> None:
        self.lease_id = lease_id
        self.renewable = renewable
        self.granted = granted
        self.values = values  # field -> value (a path) or {"token": value} (a minted token)


class OpenBaoSource:
    def __init__(
        self,
        transports: Sequence[Transport],
        login: VaultLogin,
        *,
        namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not transports:
            raise ConfigError("no OpenBao/Vault address: set STRONGHOLD_VAULT_ADDR (or BAO_ADDR, VAULT_ADDR)")
        self._transports = list(transports)
        self._current = 0
        self._login = login
        self._namespace = namespace
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self.session_ttl: float = math.inf
        self.session_expires_at: float = math.inf
        self._leases: dict[str, _Lease] = {}  # path, or "token:<NAME>" for minted tokens

    # -- HTTP with fail-over ---------------------------------------------

    def _request(self, method: str, path: str, body: object | None = None, *, timeout: float | None = None) -> Response:
        """Try each address in turn on connection trouble or 503 (sealed, standby)."""
        headers = {"X-Vault-Request": "true"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        if self._token:
            headers["X-Vault-Token"] = self._token
        last_error: TransientError | None = None
        last_answer: Response | None = None
        count = len(self._transports)
        for offset in range(count):
            index = (self._current + offset) % count
            try:
                answer = self._transports[index].request(method, "/v1/" + path, body, headers=headers, timeout=timeout)
            except TransientError as exc:
                last_error = exc
                continue
            if answer.status == 503 and offset < count - 1:
                last_answer = answer
                continue
            if index != self._current:
                log.info("OpenBao: using another address", address=self._transports[index].base_url)
                self._current = index
            return answer
        if last_answer is not None:
            return last_answer
        assert last_error is not None
        raise last_error

    def _json(self, answer: Response, what: str, names: str) -> dict:
        status = answer.status
        if status in (200, 204):
            if status == 204 or not answer.body:
                return {}
            data = answer.json()
            if not isinstance(data, dict):
                raise BrokenAnswerError(f"{what}: the answer is not a JSON object")
            return data
        detail = answer.error_detail()
        if status == 403:
            raise _PermissionDeniedError(f"{names}: permission denied by OpenBao ({what}{detail})")
        if status == 404:
            raise NotFoundError(f"{names}: nothing at {what} on {self._transports[self._current].label} (404{detail})")
        if status in TRANSIENT_STATUSES or status >= 500:
            sealed = " (sealed or standby)" if status == 503 else ""
            raise TransientError(f"{what}: OpenBao answered {status}{sealed}{detail}", retry_after=answer.retry_after)
        if 300 <= status < 400:
            raise BrokenAnswerError(f"{what}: OpenBao answered a redirect ({status}), which is never followed")
        raise UnavailableError(f"{names}: OpenBao rejected {what} ({status}{detail})")

    # -- the client token ----------------------------------------------------

    def login(self) -> None:
        sent_at = self._clock()
        if not self._login.creates_token:
            token = self._login.static_token()
            log.protect(token)
            with self._lock:
                self._token = token
            self._learn_token_ttl(sent_at)
            return
        self._token = None
        path = f"auth/{self._login.mount}/login"
        try:
            data = self._json(self._request("POST", path, self._login.body()), path, "login")
        except (_PermissionDeniedError, NotFoundError) as exc:
            raise RefusedError(f"OpenBao login refused ({self._login.method}): {exc.message}") from None
        except UnavailableError as exc:
            if isinstance(exc, TransientError):
                raise
            raise RefusedError(f"OpenBao login refused ({self._login.method}): {exc.message}") from None
        self._take_auth(data, sent_at, "login")
        log.debug("logged in to OpenBao", method=self._login.method, ttl=self.session_ttl)

    def _learn_token_ttl(self, sent_at: float) -> None:
        """A given token: learn when it expires (a root token never does)."""
        try:
            data = self._json(self._request("GET", "auth/token/lookup-self"), "auth/token/lookup-self", "token")
        except _PermissionDeniedError:
            raise RefusedError("the OpenBao token was refused (lookup-self: permission denied)") from None
        info = data.get("data")
        ttl = info.get("ttl") if isinstance(info, dict) else None
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise BrokenAnswerError("lookup-self answer has no ttl")
        self._set_session(ttl, sent_at)

    def _take_auth(self, data: dict, sent_at: float, what: str) -> None:
        auth = data.get("auth")
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token or any(c in token for c in "\0\r\n"):
            raise BrokenAnswerError(f"{what} answer has no usable client_token")
        log.protect(token)
        with self._lock:
            self._token = token
        self._set_session(_non_negative_int(auth.get("lease_duration"), f"{what} lease_duration"), sent_at)

    def _set_session(self, ttl: int, sent_at: float) -> None:
        self.session_ttl = float(ttl) if ttl > 0 else math.inf
        self.session_expires_at = sent_at + self.session_ttl

    def renew_session(self) -> None:
        sent_at = self._clock()
        try:
            data = self._json(self._request("POST", "auth/token/renew-self", {}), "auth/token/renew-self", "token")
        except (_PermissionDeniedError, UnavailableError) as exc:
            if isinstance(exc, TransientError) or not self._login.creates_token:
                raise
            log.info("OpenBao token could not be renewed; logging in again")
            self.login()
            return
        previous = self.session_ttl
        self._take_auth(data, sent_at, "renew-self")
        if self._login.creates_token and self.session_ttl < previous * RENEWAL_WORTH_IT:
            log.info("OpenBao token near its max ttl; logging in again")
            self.login()

    def _ensure_token(self) -> None:
        if self._token is None:
            self.login()

    # -- credentials -----------------------------------------------------------

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        """Every reference, all or nothing; a 403 means logging in again, once."""
        for attempt in (1, 2):
            self._ensure_token()
            try:
                return self._issue_once(references)
            except _PermissionDeniedError as exc:
                if attempt == 2 or not self._login.creates_token:
                    raise RefusedError(exc.message) from None
                log.info("OpenBao refused the token; logging in again")
                self.login()
        raise AssertionError("unreachable")

    def _issue_once(self, references: Sequence[Reference]) -> list[Credential]:
        by_key: dict[str, list[Reference]] = {}
        for reference in references:
            key = reference.secret if reference.scheme == "vault" else f"token:{reference.name}"
            by_key.setdefault(key, []).append(reference)
        issued: dict[str, Credential] = {}
        for key, group in by_key.items():
            sent_at = self._clock()
            lease = self._refreshed_lease(key, group)
            ttl = None if not lease.lease_id and lease.granted == 0 else float(lease.granted)
            for reference in group:
                value = _field(lease.values, reference)
                log.protect(value)
                issued[reference.name] = Credential(reference.name, value, ttl, sent_at, lease.lease_id or None)
        return [issued[reference.name] for reference in references]

    def _refreshed_lease(self, key: str, group: list[Reference]) -> _Lease:
        """Renew what can be renewed; otherwise read (or mint) again."""
        wanted = max((r.ttl or 0 for r in group), default=0)
        previous = self._leases.get(key)
        if previous is not None and previous.renewable and previous.lease_id:
            renewed = self._renew(previous, wanted, key)
            if renewed is not None:
                return renewed
        lease = self._mint(group[0]) if key.startswith("token:") else self._read(key, group)
        self._leases[key] = lease
        return lease

    def _renew(self, lease: _Lease, wanted: int, key: str) -> _Lease | None:
        increment = wanted or int(lease.granted)
        try:
            if lease.lease_id.startswith(ACCESSOR_PREFIX):
                body = {"accessor": lease.lease_id[len(ACCESSOR_PREFIX) :], "increment": f"{increment}s"}
                data = self._json(self._request("POST", "auth/token/renew-accessor", body), "renew-accessor", key)
                granted = _non_negative_int((data.get("auth") or {}).get("lease_duration"), "renewed token ttl")
            else:
                body = {"lease_id": lease.lease_id, "increment": increment}
                data = self._json(self._request("PUT", "sys/leases/renew", body), "sys/leases/renew", key)
                granted = _non_negative_int(data.get("lease_duration"), "renewed lease_duration")
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
        answer = self._request("GET", path)
        try:
            data = self._json(answer, path, names)
        except NotFoundError as exc:
            raise NotFoundError(exc.message + _kv2_hint(path, answer, certain=True)) from None
        except _PermissionDeniedError as exc:
            raise _PermissionDeniedError(exc.message + _kv2_hint(path, answer, certain=False)) from None
        body = data.get("data")
        if not isinstance(body, dict):
            raise BrokenAnswerError(f"{path}: the answer has no data object")
        if isinstance(body.get("data"), dict) and isinstance(body.get("metadata"), dict):
            body = body["data"]  # KV version 2
        lease_id = data.get("lease_id") or ""
        if not isinstance(lease_id, str):
            raise BrokenAnswerError(f"{path}: lease_id is not a string")
        duration = _non_negative_int(data.get("lease_duration", 0), f"{path}: lease_duration")
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
        data = self._json(self._request("POST", "auth/token/create", body), "auth/token/create", reference.name)
        auth = data.get("auth")
        token = auth.get("client_token") if isinstance(auth, dict) else None
        accessor = auth.get("accessor") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token or not isinstance(accessor, str) or not accessor:
            raise BrokenAnswerError(f"{reference.name}: token/create answer has no client_token or accessor")
        granted = _non_negative_int(auth.get("lease_duration"), f"{reference.name}: token ttl")
        renewable = auth.get("renewable") is True
        return _Lease(ACCESSOR_PREFIX + accessor, renewable, granted, {"token": token})

    # -- exit ------------------------------------------------------------------

    def revoke(self, lease_ids: Sequence[str]) -> None:
        """Best effort within REVOKE_BUDGET seconds; never raises."""
        deadline = self._clock() + REVOKE_BUDGET
        for lease_id in lease_ids:
            left = deadline - self._clock()
            if left <= 0:
                log.warning("revocation budget spent; remaining leases expire on their own")
                return
            if lease_id.startswith(ACCESSOR_PREFIX):
                self._best_effort(
                    "POST", "auth/token/revoke-accessor", {"accessor": lease_id[len(ACCESSOR_PREFIX) :]}, left
                )
            else:
                self._best_effort("PUT", "sys/leases/revoke", {"lease_id": lease_id}, left)
        if self._login.creates_token and self._token:
            left = deadline - self._clock()
            if left > 0 and self._best_effort("POST", "auth/token/revoke-self", {}, left):
                self._token = None
        log.debug("OpenBao leases revoked", leases=len(lease_ids))

    def _best_effort(self, method: str, path: str, body: dict, timeout: float) -> bool:
        try:
            self._json(self._request(method, path, body, timeout=min(timeout, 2.0)), path, "revoke")
            return True
        except StrongholdError as exc:
            log.warning(f"OpenBao: {path} failed: {exc.message}")
            return False

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


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
    if not value or "\0" in value:
        raise BrokenAnswerError(f"{reference.name}: the value is empty or holds NUL")
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


def _non_negative_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BrokenAnswerError(f"{what} is not a non-negative integer")
    return value


def vault_login_from(settings, read_file: Callable[[str, str], str]) -> VaultLogin:
    """Check the auth configuration now (78 if incomplete) and build the login."""
    method = settings.vault_auth
    if method == "token":
        if settings.vault_token_file:
            read_file(settings.vault_token_file, "STRONGHOLD_VAULT_TOKEN_FILE")
        elif not settings.vault_token:
            raise ConfigError(
                "no OpenBao token: set STRONGHOLD_VAULT_TOKEN_FILE (or STRONGHOLD_VAULT_TOKEN, BAO_TOKEN, "
                "VAULT_TOKEN), or STRONGHOLD_VAULT_AUTH=approle|jwt"
            )
        else:
            log.protect(settings.vault_token)
        return VaultLogin(
            "token", token=settings.vault_token, token_file=settings.vault_token_file, read_file=read_file
        )
    if method == "approle":
        if not settings.vault_role_id or not settings.vault_secret_id_file:
            raise ConfigError("approle auth needs STRONGHOLD_VAULT_ROLE_ID and STRONGHOLD_VAULT_SECRET_ID_FILE")
        secret_id = read_file(settings.vault_secret_id_file, "STRONGHOLD_VAULT_SECRET_ID_FILE")
        if settings.vault_remove_secret_id_file:
            # As Vault Agent's remove_secret_id_file_after_reading: the secret
            # id lives on only in this process's (non-dumpable) memory.
            try:
                os.unlink(settings.vault_secret_id_file)
            except OSError as exc:
                raise ConfigError(f"cannot remove {settings.vault_secret_id_file}: {exc.strerror}") from None
        return VaultLogin(
            "approle",
            role_id=settings.vault_role_id,
            secret_id=secret_id,
            mount=settings.vault_auth_mount,
            read_file=read_file,
        )
    if not settings.vault_jwt_file or not settings.vault_role:
        raise ConfigError("jwt auth needs STRONGHOLD_VAULT_JWT_FILE and STRONGHOLD_VAULT_ROLE")
    read_file(settings.vault_jwt_file, "STRONGHOLD_VAULT_JWT_FILE")
    return VaultLogin(
        "jwt",
        jwt_file=settings.vault_jwt_file,
        role=settings.vault_role,
        mount=settings.vault_auth_mount,
        read_file=read_file,
    )
