"""The OpenBao / Vault client token: obtained, renewed, obtained again, revoked.

The second layer under `OpenBaoSource`.  A token given as it is (`token`
auth) is looked up for its ttl and never replaced; one obtained by logging
in (approle, jwt) is renewed while renewal pays off, obtained again once it
nears its max ttl, and revoked at exit.
"""

from __future__ import annotations

import math
import threading
import time

from injector.errors import (
    BrokenAnswerError,
    NotFoundError,
    RefusedError,
    StrongholdError,
    TransientError,
    UnavailableError,
)
from injector.log import log
from injector.sources.answers import answer_int
from injector.sources.openbao.client import PermissionDeniedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from injector.sources.openbao.client import OpenBaoClient

# A renewal that grants less than this share of what was asked means the
# token or lease is near its max ttl: obtain (or read) it again instead.
RENEWAL_WORTH_IT = 0.5


class VaultLogin:
    """How to obtain a client token.  Credentials are read at each login."""

    def __init__(
        self,
        method: str,
        *,
        read_file: Callable[[str, str], str],
        token: str | None = None,
        token_file: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        jwt_file: str | None = None,
        role: str | None = None,
        mount: str | None = None,
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
        if self._token is None:
            raise RefusedError("no OpenBao token configured")  # wiring checks this before any request
        return self._token

    def body(self) -> dict[str, str]:
        if self.method == "approle":
            if self._role_id is None or self._secret_id is None:
                raise RefusedError("approle login without a role id or secret id")  # checked by the wiring
            return {"role_id": self._role_id, "secret_id": self._secret_id}
        if self._jwt_file is None or self._role is None:
            raise RefusedError("jwt login without a token file or role")  # checked by the wiring
        return {"role": self._role, "jwt": self._read_file(self._jwt_file, "STRONGHOLD_VAULT_JWT_FILE")}


class TokenSession:
    """The client token the OpenBao client sends, and when it expires."""

    def __init__(self, client: OpenBaoClient, login: VaultLogin, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._login = login
        self._clock = clock
        self._lock = threading.Lock()
        self.ttl: float = math.inf
        self.expires_at: float = math.inf

    @property
    def creates_token(self) -> bool:
        return self._login.creates_token

    @property
    def method(self) -> str:
        return self._login.method

    def ensure(self) -> None:
        if self._client.token is None:
            self.login()

    def login(self) -> None:
        sent_at = self._clock()
        if not self._login.creates_token:
            token = self._login.static_token()
            log.protect(token)
            with self._lock:
                self._client.token = token
            self._learn_token_ttl(sent_at)
            return
        self._client.token = None
        path = f"auth/{self._login.mount}/login"
        try:
            data = self._client.call("POST", path, self._login.body(), names="login")
        except (PermissionDeniedError, NotFoundError) as exc:
            raise RefusedError(f"OpenBao login refused ({self._login.method}): {exc.message}") from None
        except UnavailableError as exc:
            if isinstance(exc, TransientError):
                raise
            raise RefusedError(f"OpenBao login refused ({self._login.method}): {exc.message}") from None
        self._take_auth(data, sent_at, "login")
        log.debug("logged in to OpenBao", method=self._login.method, ttl=self.ttl)

    def _learn_token_ttl(self, sent_at: float) -> None:
        """A given token: learn when it expires (a root token never does)."""
        path = "auth/token/lookup-self"
        try:
            data = self._client.call("GET", path, names="token")
        except PermissionDeniedError:
            raise RefusedError("the OpenBao token was refused (lookup-self: permission denied)") from None
        info = data.get("data")
        ttl = info.get("ttl") if isinstance(info, dict) else None
        self._set_ttl(answer_int(ttl, "lookup-self answer ttl", minimum=0), sent_at)

    def _take_auth(self, data: dict, sent_at: float, what: str) -> None:
        auth = data.get("auth")
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(token, str) or not token or any(c in token for c in "\0\r\n"):
            raise BrokenAnswerError(f"{what} answer has no usable client_token")
        log.protect(token)
        with self._lock:
            self._client.token = token
        self._set_ttl(answer_int(auth.get("lease_duration"), f"{what} lease_duration", minimum=0), sent_at)

    def _set_ttl(self, ttl: int, sent_at: float) -> None:
        self.ttl = float(ttl) if ttl > 0 else math.inf
        self.expires_at = sent_at + self.ttl

    def renew(self) -> None:
        sent_at = self._clock()
        path = "auth/token/renew-self"
        try:
            data = self._client.call("POST", path, {}, names="token")
        except (PermissionDeniedError, UnavailableError) as exc:
            if isinstance(exc, TransientError) or not self._login.creates_token:
                raise
            log.info("OpenBao token could not be renewed; logging in again")
            self.login()
            return
        previous = self.ttl
        self._take_auth(data, sent_at, "renew-self")
        if self._login.creates_token and self.ttl < previous * RENEWAL_WORTH_IT:
            log.info("OpenBao token near its max ttl; logging in again")
            self.login()

    def revoke(self, timeout: float) -> bool:
        """Revoke a token we created (best effort); True if it is gone or was never ours."""
        if not self._login.creates_token or not self._client.token:
            return True
        path = "auth/token/revoke-self"
        try:
            self._client.call("POST", path, {}, names="revoke", timeout=min(timeout, 2.0))
        except StrongholdError as exc:
            log.warning(f"OpenBao: {path} failed: {exc.message}")
            return False
        self._client.token = None
        return True
