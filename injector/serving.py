"""The one HOST:PORT listener helper, shared by `dev-proxy --listen` and `sidecar --health-listen`.

    parse_listen("[::1]:0", "--health-listen")  ->  ("::1", 0)
    bind(listen, flag, make)                    ->  make((host, port), family), errors as one line (78)
    listen_url(address)                         ->  "http://[::1]:43210"

One parser, so both flags take the same spellings (IPv4, [IPv6], port 0
for a free one) and refuse the same mistakes with the same words.
"""

from __future__ import annotations

import socket

from injector.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def parse_listen(listen: str, flag: str, *, loopback_only: bool = False) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT -> (host, port); 78 naming `flag` when it is not one."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535 or (":" in host and "[" not in listen):
        raise ConfigError(f"{flag} {listen!r} is not HOST:PORT (an IPv6 address in brackets: [::1]:8080)")
    if loopback_only:
        from injector.netaddr import is_loopback

        if not is_loopback(host):
            raise ConfigError(f"{flag} {host} is not a loopback address; this serves this machine only")
    return host, int(port)


def bind(
    listen: str,
    flag: str,
    make: Callable[[tuple[str, int], socket.AddressFamily], T],
    *,
    loopback_only: bool = False,
) -> T:
    """Parse `listen` and call `make(address, family)` to bind it; a failure is one line (78) naming `flag`."""
    address = parse_listen(listen, flag, loopback_only=loopback_only)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        return make(address, family)
    except (OSError, OverflowError) as exc:
        import errno

        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"{flag} {listen}: that address is already in use; pick another port, or port 0 for a free one"
            ) from None
        raise ConfigError(f"{flag} {listen}: cannot listen there ({getattr(exc, 'strerror', None) or exc})") from None


def listen_url(address: tuple[object, ...]) -> str:
    """http://HOST:PORT of a bound address (IPv6 in brackets)."""
    host, port = address[0], address[1]
    text = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"
