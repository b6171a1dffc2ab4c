"""The audit's failures (docs/audit.md); their exit codes are rows of the one table, `ExitCode`."""

from __future__ import annotations

from injector.errors import ExitCode, StrongholdError

FINDINGS = ExitCode.FINDINGS


class AuditUsageError(StrongholdError):
    exit_code = ExitCode.USAGE


class BadImageError(StrongholdError):
    """The archive, layout, manifest or layer is malformed, hostile or unsupported."""

    exit_code = ExitCode.BAD_IMAGE


class NoInputError(StrongholdError):
    """The target does not exist or cannot be read."""

    exit_code = ExitCode.NO_INPUT


class RegistryUnavailableError(StrongholdError):
    exit_code = ExitCode.UNAVAILABLE


class RegistryRefusedError(StrongholdError):
    exit_code = ExitCode.REFUSED
