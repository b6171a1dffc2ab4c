"""The child's environment: tokens for env references, our own settings scrubbed, the locale as it was."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from injector.settings.references import Reference, passes_to_child

TYPE_CHECKING = False


if TYPE_CHECKING:
    from injector.delivery.tokendir import TokenDirectory


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus configuration variables (STRONGHOLD_*, and BAO_*/VAULT_* but for
    the address, CA and namespace, README: OpenBao and Vault)."""
    return {name: value for name, value in environ.items() if passes_to_child(name)}


def child_environment(
    base: Mapping[str, str],
    references: Iterable[Reference],
    values: Mapping[str, str],
    directory: TokenDirectory | None,
) -> dict[str, str]:
    """The child's environment: `base` with each reference replaced.

    `values` maps an env-delivered reference's name to its current token.
    """
    environ = dict(base)
    for reference in references:
        if reference.is_file:
            if directory is None:
                raise ValueError(f"{reference.name}: a file reference needs a directory")
            environ[reference.name] = directory.file_path(reference)
        else:
            environ[reference.name] = values[reference.name]
    return environ
