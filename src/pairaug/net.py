"""Which hosts count as this machine: the one rule the LLM privacy guard and `pairaug review`'s bind check share."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """The exact name `localhost` or a loopback IP (127.0.0.0/8, ::1).

    `*.localhost` names are not: RFC 6761 asks resolvers to map them to loopback, but many pass them on
    to a DNS server that may answer with any address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
