"""Registry credentials for the audit: --creds, auth files, and Docker credential helpers.

Where they come from, first match wins: `--creds USER:PASSWORD`; else the
first of `REGISTRY_AUTH_FILE` and `~/.docker/config.json` that says anything
about the host: its `credHelpers[host]` helper, an inline `auths` entry, or
its `credsStore` helper.  A helper is `docker-credential-<name>` on PATH, run
as Docker runs it (`get`, the registry host on stdin, JSON with `Username`
and `Secret` on stdout), but with a minimal environment, a deadline and a
bound on what it may print; its output is never logged, since it holds the
secret.  "credentials not found" from a helper means: go on anonymously.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time

from injector.audit.errors import AuditUsageError, RegistryRefusedError

HELPER_TIMEOUT = 30.0  # seconds for one `get`, whatever the helper does (a keychain prompt, a hang)
HELPER_MAX_OUTPUT = 64 * 1024  # a credential is a few hundred bytes of JSON
HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# What a helper may need (a keychain's session bus, pass/gpg, cloud SDK settings); nothing else of ours.
HELPER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
              "DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "GNUPGHOME", "GPG_AGENT_INFO", "PASSWORD_STORE_DIR")  # fmt: skip
HELPER_ENV_PREFIXES = ("AWS_", "CLOUDSDK_", "GOOGLE_", "AZURE_")
Credentials = tuple[str, str]


def registry_credentials(host: str, creds: str | None) -> Credentials | None:
    """--creds USER:PASSWORD, else REGISTRY_AUTH_FILE, else ~/.docker/config.json."""
    if creds:
        return parse_creds(creds)
    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(os.environ["REGISTRY_AUTH_FILE"])
    paths.append(os.path.join(os.path.expanduser("~"), ".docker", "config.json"))
    for path in paths:
        try:
            with open(path, "rb") as handle:
                config = json.loads(handle.read(1024 * 1024))
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
            return run_helper(helpers[host], host, path)
        found = _inline(config, host, path)
        if found:
            return found
        if isinstance(config.get("credsStore"), str) and config["credsStore"]:
            return run_helper(config["credsStore"], host, path)
    return None


def parse_creds(creds: str) -> Credentials:
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise AuditUsageError("--creds takes USER:PASSWORD")
    return user, password


def _inline(config: dict, host: str, path: str) -> Credentials | None:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v2/"):
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuditUsageError(f"{path}: the auth entry for {host} is not base64 USER:PASSWORD") from None
            if sep:
                return user, password
    return None


def run_helper(name: str, host: str, path: str) -> Credentials | None:
    """`docker-credential-<name> get` for `host`: (user, secret), or None when it has none for the host."""
    if not HELPER_NAME.match(name):
        raise AuditUsageError(f"{path}: credential helper name {name[:64]!r} is not a plain name")
    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        raise RegistryRefusedError(f"{host}: credential helper {program} (named in {path}) is not on PATH")
    env = {k: v for k, v in os.environ.items() if k in HELPER_ENV or k.startswith(HELPER_ENV_PREFIXES)}
    try:
        process = subprocess.Popen(
            [executable, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # may echo what it was asked or what it found: never shown
            env=env,
            close_fds=True,
            start_new_session=True,  # a terminal's ^C goes to us; we end it ourselves
        )
    except OSError as exc:
        raise RegistryRefusedError(f"{host}: credential helper {program} could not start ({exc.strerror})") from None
    try:
        output, problem = _bounded_output(process, host.encode())
    finally:
        _end_group(process)
    if problem:
        raise RegistryRefusedError(f"{host}: credential helper {program} {problem}")
    if process.returncode != 0:
        if b"credentials not found" in output.lower():
            return None  # Docker's word for "nothing stored for this host": go on anonymously
        raise RegistryRefusedError(f"{host}: credential helper {program} failed (exit {process.returncode})")
    try:
        answer = json.loads(output)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryRefusedError(
            f"{host}: credential helper {program} answered something other than its JSON"
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        raise RegistryRefusedError(f"{host}: credential helper {program} answered no usable credential")
    if user == "<token>":  # an identity token for an OAuth refresh flow, not a password
        raise RegistryRefusedError(f"{host}: credential helper {program} holds an identity token; not supported")
    return user, secret


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """A helper still running (past the deadline or the output bound): kill its group, then reap it."""
    if process.returncode is None:  # not reaped yet, so its pid (and group id) is still its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # start_new_session made it a group leader: its children too
        process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _bounded_output(process: subprocess.Popen[bytes], request: bytes) -> tuple[bytes, str]:
    """Send the request, read stdout until EOF: -> (output, "" or what went wrong), within the bounds."""
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(request)
        process.stdin.close()
    except BrokenPipeError:
        pass  # it did not want to read: its exit status says the rest
    deadline = time.monotonic() + HELPER_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", f"did not answer within {HELPER_TIMEOUT:.0f} s"
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > HELPER_MAX_OUTPUT:
                return b"", f"printed more than {HELPER_MAX_OUTPUT} bytes"
            chunks.append(chunk)
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        return b"", f"did not exit within {HELPER_TIMEOUT:.0f} s"
    return b"".join(chunks), ""
