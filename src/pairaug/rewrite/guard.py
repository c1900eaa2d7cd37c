"""Privacy guard: radiology reports are patient data and stay on hosts the user controls.

A backend may send reports only to a loopback address (localhost, 127.0.0.0/8, ::1) or to a host the
user lists in `rewrite.private_hosts` (exact names, `*.suffix` wildcards, IP addresses or CIDR
ranges), unless `rewrite.allow_external: true` says the data use agreement allows more. Names are not
resolved: a name is private only because the user said so, never because DNS said so today.

`*.localhost` names (`llm.localhost`) are not taken as loopback: RFC 6761 asks resolvers to map them
to loopback, but many (glibc's files/DNS lookup, corporate DNS) pass them on to a server that may
answer with any address. Only the exact name `localhost` and loopback IPs pass without a listing; list
`*.localhost` in `rewrite.private_hosts` to allow such names.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pairaug.errors import PairaugError
from pairaug.net import is_loopback


class PrivacyError(PairaugError):
    """A backend was about to send patient reports to a host not known to be private."""


def host_of(url: str) -> str:
    """The host name or IP of `url` (lower case, IPv6 without brackets)."""
    try:
        host = urlsplit(url if "://" in url else f"//{url}").hostname
    except ValueError:
        host = None
    if not host:
        raise PrivacyError(f"cannot tell the host of {url!r}: refusing to send reports there")
    return host.lower().rstrip(".")


def is_listed(host: str, private_hosts: list[str]) -> bool:
    """Whether `host` matches an entry of `private_hosts` (name, *.suffix, IP or CIDR)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in private_hosts:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
        elif entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def check_destination(url: str, *, allow_external: bool, private_hosts: list[str], param: str) -> str:
    """Return the host of `url`, or raise PrivacyError saying why reports may not go there."""
    host = host_of(url)
    if allow_external or is_loopback(host) or is_listed(host, private_hosts):
        return host
    raise PrivacyError(
        f"refusing to send patient reports to {host} (from {param}): it is not a loopback address and not "
        f"listed in rewrite.private_hosts. Add it there if it is your own server, or set "
        f"rewrite.allow_external: true if your data use agreement allows sending reports to it."
    )
