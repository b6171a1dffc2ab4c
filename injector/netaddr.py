"""Which hosts are this machine: the one loopback check (plain http:// is allowed only to loopback).

Standard library only, so the entrypoint and the audit can both import it.
"""

from __future__ import annotations


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # (free: urllib.parse, which the start path needs anyway, has loaded it)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
