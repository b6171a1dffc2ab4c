"""OpenBao / Vault HTTP: every address in turn, and what each status means.

The first of the two layers under `OpenBaoSource`: requests go to the
address that last answered, and on to the next one on connection trouble or
a 503 (sealed, standby), as Vault Agent's fail-over does.
"""

from __future__ import annotations

from injector.errors import ConfigError, NotFoundError, StrongholdError, TransientError
from injector.log import log
from injector.sources.answers import json_object, raise_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from injector.sources.transport import Response, Transport

# 412: a performance standby that has not caught up yet (X-Vault-Index); 5xx: sealed, standby, overloaded.
TRANSIENT_STATUSES = frozenset({412, 429, 500, 502, 503, 504})


class PermissionDeniedError(StrongholdError):
    """403: a policy refused, or the client token is no longer valid (the caller decides which)."""


class OpenBaoClient:
    """Requests to one of several addresses, with the client token and namespace headers."""

    def __init__(self, transports: Sequence[Transport], *, namespace: str | None = None) -> None:
        if not transports:
            raise ConfigError("no OpenBao/Vault address: set STRONGHOLD_VAULT_ADDR (or BAO_ADDR, VAULT_ADDR)")
        self._transports = list(transports)
        self._current = 0
        self._namespace = namespace
        self.token: str | None = None  # sent as X-Vault-Token once set

    @property
    def label(self) -> str:
        return self._transports[self._current].label

    def request(self, method: str, path: str, body: object | None = None, *, timeout: float | None = None) -> Response:
        """Try each address in turn on connection trouble or 503 (sealed, standby)."""
        headers = {"X-Vault-Request": "true"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        if self.token:
            headers["X-Vault-Token"] = self.token
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
        if last_error is None:  # count >= 1, so one of the two is set
            raise TransientError(f"{path}: no OpenBao address answered")
        raise last_error

    def json(self, answer: Response, what: str, names: str) -> dict:
        """The JSON object of a 200 or 204 answer, or the exception its status means."""
        status = answer.status
        if status == 204:
            return {}  # no content, whatever a broken server may have sent along
        if status == 200:
            return json_object(answer, what)
        detail = answer.error_detail()
        if status == 403:
            raise PermissionDeniedError(f"{names}: permission denied by OpenBao ({what}{detail})")
        if status == 404:
            raise NotFoundError(f"{names}: nothing at {what} on {self.label} (404{detail})")
        raise_for_status(answer, server="OpenBao", what=what, names=names, rejected=what, transient=TRANSIENT_STATUSES)

    def call(
        self, method: str, path: str, body: object | None = None, *, names: str, timeout: float | None = None
    ) -> dict:
        """request() then json(): the common case."""
        return self.json(self.request(method, path, body, timeout=timeout), path, names)
