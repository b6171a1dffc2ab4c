"""The exception tree and the exit codes of README: Exit codes.

Every failure the user can see is one of these exceptions; `cli.main` is the
only place that turns them into an exit code.  Messages are
one line, name what was wrong, and never contain a credential value.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code stronghold-init gives, the audit's included (README: Exit codes; sysexits names)."""

    OK = 0
    FINDINGS = 1  # audit: at least one finding
    USAGE = 64
    BAD_IMAGE = 65  # audit: a malformed, hostile or unsupported archive, manifest or layer (EX_DATAERR)
    NO_INPUT = 66  # audit: a missing or unreadable target (EX_NOINPUT)
    UNAVAILABLE = 69
    REFUSED = 77
    CONFIG = 78
    INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: a bug in stronghold-init, not one of the cases above
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127
    SIGNALLED = 128  # + N: the command (or stronghold-init itself) ended by signal N, as a shell reports it

    @staticmethod
    def killed_by(signum: int) -> int:
        """128 + N, the code a shell gives a process ended by signal N."""
        return ExitCode.SIGNALLED + signum


class StrongholdError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code: int = ExitCode.UNAVAILABLE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(StrongholdError):
    """Bad command line: unknown flag, bad flag value, missing command."""

    exit_code = ExitCode.USAGE


class ConfigError(StrongholdError):
    """Bad configuration: reference, directory, URL, token file, user."""

    exit_code = ExitCode.CONFIG


class NotFoundError(ConfigError):
    """The proxy does not know a requested secret (404)."""


class RefusedError(StrongholdError):
    """Login refused, or a scope or secret refused (401/403)."""

    exit_code = ExitCode.REFUSED


class UnavailableError(StrongholdError):
    """The proxy cannot be used: unreachable until the deadline, or incompatible."""

    exit_code = ExitCode.UNAVAILABLE


class TransientError(UnavailableError):
    """Worth retrying: connection trouble, 429/5xx, or a broken answer.

    `retry_after` carries the server's Retry-After, in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BrokenAnswerError(TransientError):
    """The proxy answered something that breaks protocol v1; nothing of it is used."""


class SessionExpiredError(StrongholdError):
    """401 on an authenticated call: the session must be renewed by logging in."""


class CommandError(StrongholdError):
    """The command cannot be started: 127 when not found, 126 when not executable."""
