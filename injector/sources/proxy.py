"""Credential proxy protocol v1 (docs/protocol.md): login, renew, issue, revoke.

Every answer is validated before anything in it is used; a broken answer is a
BrokenAnswerError (transient) and its content is never delivered.  Status
codes map to the exception classes the rest of the program acts on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from injector.errors import BrokenAnswerError, NotFoundError, RefusedError, SessionExpiredError, StrongholdError
from injector.log import log
from injector.settings.references import Credential, Reference, value_problem
from injector.sources.answers import answer_int, json_object, once_more_after_login, raise_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.transport import Response, Transport

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
REVOKE_TIMEOUT = 2.0

LoginBody = Callable[[], dict[str, str]]


class ProxySource:
    """A session with the credential proxy, renewed and re-established as needed."""

    def __init__(
        self,
        transport: Transport,
        login_body: LoginBody,
        clock: Callable[[], float] = time.monotonic,
        *,
        credential: str = "the bootstrap token",
    ) -> None:
        self._transport = transport
        self._login_body = login_body
        self._credential = credential  # what login sends and where it came from, for a refusal's message
        self._clock = clock
        self._lock = threading.Lock()
        self._session: str | None = None
        self.session_ttl: float = 0.0
        self.session_expires_at: float = 0.0

    # -- session ---------------------------------------------------------

    def login(self) -> None:
        body = self._login_body()  # re-read each time: the platform may rotate the file
        sent_at = self._clock()
        answer = self._transport.request("POST", "/v1/auth/login", body)
        if answer.status in (401, 403):
            if _looks_like_openbao(answer):
                raise RefusedError(
                    f"login refused by {self._transport.label} ({answer.status}): that server looks like "
                    "OpenBao/Vault, not a credential proxy; for OpenBao/Vault, set STRONGHOLD_VAULT_ADDR to its "
                    "address (not STRONGHOLD_PROXY_URL) and use vault:// references, e.g. "
                    "vault://secret/data/app#STRIPE_KEY (README: OpenBao and Vault)"
                )
            raise RefusedError(
                f"login refused by the proxy ({answer.status}{answer.error_detail()}): check {self._credential}"
            )
        self._take_session(_check_status(answer, "login", ()), sent_at)
        log.debug("logged in", ttl=self.session_ttl)

    def renew_session(self) -> None:
        """Renew the session; on a 401 log in again (docs/protocol.md)."""
        session = self._current_session()
        sent_at = self._clock()
        answer = self._transport.request("POST", "/v1/auth/renew", headers=_bearer(session))
        if answer.status == 401:
            log.info("session could not be renewed; logging in again")
            self.login()
            return
        self._take_session(_check_status(answer, "session renewal", ()), sent_at)
        log.debug("session renewed", ttl=self.session_ttl)

    def _take_session(self, data: dict, sent_at: float) -> None:
        token = data.get("session_token")
        if not isinstance(token, str) or not token or any(c in token for c in "\0\r\n"):
            raise BrokenAnswerError("login answer has no usable session_token")
        ttl = answer_int(data.get("ttl"), "session ttl", minimum=1)
        log.protect(token)
        with self._lock:
            self._session = token
            self.session_ttl = ttl
            self.session_expires_at = sent_at + ttl

    def _current_session(self) -> str:
        with self._lock:
            session = self._session
        if session is None:
            self.login()
            with self._lock:
                session = self._session
        if session is None:
            raise BrokenAnswerError("login gave no session")  # login() sets one or raises
        return session

    # -- credentials -----------------------------------------------------

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        """Issue every reference in one request; all or nothing."""
        requests = [_request_item(reference) for reference in references]
        names = [reference.name for reference in references]

        def attempt() -> list[Credential]:
            session = self._current_session()
            sent_at = self._clock()
            answer = self._transport.request(
                "POST", "/v1/credentials", {"requests": requests}, headers=_bearer(session)
            )
            try:
                data = _check_status(answer, "credentials", names)
            except NotFoundError:
                raise self._unknown_secret(answer, references) from None
            return _credentials_from(data, names, sent_at)

        return once_more_after_login(
            attempt,
            rejected=SessionExpiredError,
            login=self.login,
            refused=lambda _: RefusedError("the proxy refused a fresh session (401 after logging in again)"),
            note="session expired; logging in again",
        )

    def _unknown_secret(self, answer: Response, references: Sequence[Reference]) -> NotFoundError:
        """404: name the secret path, the variable, and the env file it came from."""
        failed = _failed_names(answer, [r.name for r in references])
        culprits = [r for r in references if r.name == failed] or list(references)
        what = "; ".join(f"{r.name}: unknown secret {r.secret!r}{_from_file(r)}" for r in culprits)
        return NotFoundError(
            f"{what} at {self._transport.label} (404{answer.error_detail()}); check the path after stronghold://"
        )

    def revoke(self, lease_ids: Sequence[str]) -> int:
        """Best effort, bounded by a short timeout; never raises.  -> how many were revoked."""
        if not lease_ids:
            return 0
        try:
            session = self._session
            if session is None:
                return 0
            answer = self._transport.request(
                "POST",
                "/v1/leases/revoke",
                {"lease_ids": list(lease_ids)},
                headers=_bearer(session),
                timeout=REVOKE_TIMEOUT,
            )
            if answer.status not in (200, 204):
                log.warning("revoking leases failed", status=answer.status, leases=len(lease_ids))
                return 0
            log.debug("leases revoked", leases=len(lease_ids))
            return len(lease_ids)
        except StrongholdError as exc:
            log.warning(f"revoking leases failed: {exc.message}", leases=len(lease_ids))
            return 0


def _bearer(session: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session}"}


def _request_item(reference: Reference) -> dict[str, object]:
    item: dict[str, object] = {"name": reference.name, "secret": reference.secret, "scopes": list(reference.scopes)}
    if reference.ttl is not None:
        item["ttl"] = reference.ttl
    return item


def _check_status(answer: Response, what: str, names: Sequence[str]) -> dict:
    """The JSON object of a 200 answer, or the exception its status means (the statuses only v1 has first)."""
    status = answer.status
    if status == 200:
        if not answer.body:
            raise BrokenAnswerError(f"{what}: the answer is not a JSON object")
        return json_object(answer, what)
    failed = _failed_names(answer, names)
    detail = answer.error_detail()
    if status == 401:
        raise SessionExpiredError(f"{what}: session expired")
    if status == 403:
        raise RefusedError(f"{failed}: refused by the proxy (403{detail})")
    if status == 404:
        raise NotFoundError(f"{failed}: unknown secret (404{detail})")
    raise_for_status(
        answer,
        server="proxy",
        what=what,
        names=failed,
        rejected="the request as incompatible",
        transient=TRANSIENT_STATUSES,
    )


def _failed_names(answer: Response, names: Sequence[str]) -> str:
    try:
        data = answer.json()
    except BrokenAnswerError:
        data = None
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and name in names:
        return name
    return ", ".join(names) or "request"


def _from_file(reference: Reference) -> str:
    return f" (set in {reference.origin})" if reference.origin else ""


def _looks_like_openbao(answer: Response) -> bool:
    """OpenBao and Vault answer errors as {"errors": [...]}; protocol v1 as {"error": "..."}."""
    try:
        data = answer.json()
    except BrokenAnswerError:
        return False
    return isinstance(data, dict) and isinstance(data.get("errors"), list) and "error" not in data


def _credentials_from(data: dict, names: Sequence[str], sent_at: float) -> list[Credential]:
    items = data.get("credentials")
    if not isinstance(items, list):
        raise BrokenAnswerError("credentials answer has no credentials list")
    wanted = set(names)
    issued: dict[str, Credential] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BrokenAnswerError("a credential in the answer has no name")
        name = item["name"]
        if name not in wanted or name in issued:
            raise BrokenAnswerError("answer holds a credential that was not asked for, or one twice")
        value = item.get("value")
        problem = value_problem(value)
        if problem:
            raise BrokenAnswerError(f"{name}: the value in the answer {problem}")
        ttl = answer_int(item.get("ttl"), f"{name}: ttl", minimum=1)
        lease_id = item.get("lease_id")
        if lease_id is not None and (not isinstance(lease_id, str) or not lease_id):
            raise BrokenAnswerError(f"{name}: lease_id is not a string")
        issued[name] = Credential(name=name, value=value, ttl=ttl, issued_at=sent_at, lease_id=lease_id)
    missing = [name for name in names if name not in issued]
    if missing:
        raise BrokenAnswerError(f"answer lacks {', '.join(missing)}")
    for credential in issued.values():
        log.protect(credential.value)
    return [issued[name] for name in names]
