"""--env-file: dotenv files loaded into the environment with python-dotenv.

The only reader of a dotenv file on the run path (README: References).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping

from injector.errors import ConfigError

# Never interpolated into an env file: `INNOCENT=${STRONGHOLD_BOOTSTRAP_TOKEN}`
# would otherwise hand a credential to the child under a name nobody scrubs.
NOT_INTERPOLATED = ("STRONGHOLD_", "VAULT_", "BAO_")


class _Interpolation(Mapping[str, str]):
    """What `${NAME}` in an env file can see: the real environment over the
    values loaded so far, without any credential-bearing variable."""

    def __init__(self, real: Mapping[str, str], loaded: Mapping[str, str]) -> None:
        self._real = real
        self._loaded = loaded

    def __getitem__(self, name: str) -> str:
        if name.startswith(NOT_INTERPOLATED):
            raise KeyError(name)
        if name in self._real:
            return self._real[name]
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - Mapping requires it; interpolation only looks names up
        return iter(())

    def __len__(self) -> int:  # pragma: no cover
        return 0


def load_env_files(paths: list[str], environ: MutableMapping[str, str]) -> dict[str, str]:
    """Load dotenv files into `environ` with python-dotenv (README: References).

    Precedence as Node's `--env-file` and Compose's `env_file`: the real
    environment wins over every file, and a later file over an earlier one.
    `${NAME}` is expanded (python-dotenv's POSIX syntax, `${NAME:-default}`
    too) from the real environment and what was loaded before it, but never
    from a STRONGHOLD_*, VAULT_* or BAO_* variable: those expand to "" (or the
    default).  Returns variable -> file it came from, for error messages and
    the rule that no credential from the environment goes to an address
    from a file (`check_env_file_addresses`).
    """
    if not paths:
        return {}
    from dotenv import dotenv_values  # imported only when used: it costs ~40 ms
    from dotenv.variables import parse_variables

    real = dict(environ)
    loaded: dict[str, str] = {}
    origins: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"--env-file {path}: no such file")
        try:
            values = dotenv_values(path, interpolate=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--env-file {path}: cannot read it ({type(exc).__name__})") from None
        visible = _Interpolation(real, loaded)
        for name, raw in values.items():
            if raw is None:
                continue
            if "\0" in raw or "\0" in name or "=" in name or not name:
                raise ConfigError(f"--env-file {path}: bad variable {name!r}")
            loaded[name] = "".join(atom.resolve(visible) for atom in parse_variables(raw))
            origins[name] = path
    for name, value in loaded.items():
        if name in real:
            del origins[name]  # the real environment wins
        else:
            environ[name] = value
    return origins


# Twins an env file may not set: a project's .env must not loosen the user's own safeguards.
NOT_FROM_ENV_FILES = ("STRONGHOLD_INSECURE_HTTP", "STRONGHOLD_ALLOW_DISK")


def check_env_file_switches(env_origins: Mapping[str, str]) -> None:
    """78 when an env file sets a twin that loosens a safeguard (--insecure-http, --allow-disk)."""
    for name in NOT_FROM_ENV_FILES:
        if name in env_origins:
            raise ConfigError(
                f"{name} comes from the env file {env_origins[name]}: an env file may not loosen this "
                "safeguard; set it in the environment or with its flag"
            )
