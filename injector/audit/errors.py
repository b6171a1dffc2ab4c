"""The audit's failures and their exit codes (docs/audit.md; sysexits names)."""

from __future__ import annotations

from injector.errors import StrongholdError

FINDINGS = 1  # at least one finding
EX_USAGE = 64
EX_DATAERR = 65  # a malformed or unsupported archive
EX_NOINPUT = 66  # a missing or unreadable target
EX_UNAVAILABLE = 69  # registry unreachable
EX_NOPERM = 77  # registry refused the credentials


class AuditUsageError(StrongholdError):
    exit_code = EX_USAGE


class BadImageError(StrongholdError):
    """The archive, layout, manifest or layer is malformed, hostile or unsupported."""

    exit_code = EX_DATAERR


class NoInputError(StrongholdError):
    """The target does not exist or cannot be read."""

    exit_code = EX_NOINPUT


class RegistryUnavailableError(StrongholdError):
    exit_code = EX_UNAVAILABLE


class RegistryRefusedError(StrongholdError):
    exit_code = EX_NOPERM
