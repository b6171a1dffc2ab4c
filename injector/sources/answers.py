"""What both sources do with an HTTP answer.

One table from status to the exception the rest of the program acts on (the
exit codes of the README's table), one check for the integers an answer
carries, and one "log in again and try once more" for a session or token the
server no longer accepts.
"""

from __future__ import annotations

from injector.errors import BrokenAnswerError, StrongholdError, TransientError, UnavailableError
from injector.log import log
from injector.settings.references import granted_ttl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn, TypeVar

    from injector.sources.transport import Response

    T = TypeVar("T")


def json_object(answer: Response, what: str) -> dict:
    """The JSON object of a successful answer (an empty body is an empty object)."""
    if not answer.body:
        return {}
    data = answer.json()
    if not isinstance(data, dict):
        raise BrokenAnswerError(f"{what}: the answer is not a JSON object")
    return data


def raise_for_status(
    answer: Response, *, server: str, what: str, names: str, rejected: str, transient: frozenset[int]
) -> NoReturn:
    """The exception an unsuccessful status means, once the caller handled the statuses only it knows.

    `transient` and every 5xx are retried (503 from OpenBao: sealed or
    standby); a redirect is never followed; any other 4xx means the request
    can never succeed as asked (69).
    """
    status = answer.status
    detail = answer.error_detail()
    if status in transient or status >= 500:
        sealed = " (sealed or standby)" if status == 503 and server == "OpenBao" else ""
        raise TransientError(f"{what}: {server} answered {status}{sealed}{detail}", retry_after=answer.retry_after)
    if 300 <= status < 400:
        raise BrokenAnswerError(f"{what}: {server} answered a redirect ({status}), which is never followed")
    if 400 <= status < 500:
        raise UnavailableError(f"{names}: {server} rejected {rejected} ({status}{detail})")
    raise BrokenAnswerError(f"{what}: unexpected status {status}")


def answer_int(value: object, what: str, *, minimum: int) -> int:
    """An integer from an answer (a ttl, a lease duration): at least `minimum`, capped at MAX_TTL."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise BrokenAnswerError(f"{what} is not a {kind} integer")
    return granted_ttl(value)


def once_more_after_login(
    attempt: Callable[[], T],
    *,
    rejected: type[StrongholdError],
    login: Callable[[], None] | None,
    refused: Callable[[StrongholdError], StrongholdError],
    note: str,
) -> T:
    """`attempt()`; if the server rejects our session or token (`rejected`), log in again and try once more.

    Without a way to log in again (`login` None: a token given as it is), or
    when the fresh session is rejected too, `refused(exc)` is raised.
    """
    try:
        return attempt()
    except rejected as exc:
        if login is None:
            raise refused(exc) from None
        log.info(note)
        login()
    try:
        return attempt()
    except rejected as exc:
        raise refused(exc) from None
