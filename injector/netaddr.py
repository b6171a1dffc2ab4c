"""Is a host loopback?  The one answer for the sources, the dev proxy and the audit (stdlib only, no import
cost: ipaddress is loaded only when asked, and urllib.parse on the start path loads it anyway)."""

from __future__ import annotations


def is_loopback(host: str | None) -> bool:
    """A bare host name or address (no port, no brackets), as `urlsplit(url).hostname` gives it."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authority_host(authority: str) -> str:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` -> the bare host."""
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
