"""What a `callback_url` may be, and the addresses a callback may be sent to.

A URL is absolute `http` or `https`, at most MAX_LENGTH characters, without user or
password. Unless CALLBACK_ALLOW_PRIVATE=1, its host must not be, nor resolve to, any address
that is not a public unicast one: loopback, private, link-local (169.254.169.254, the cloud
metadata service, included), multicast, reserved, unspecified, shared (100.64/10) or an
IPv4-mapped IPv6 address. The host is resolved again at every attempt and every address it
resolves to is checked, so a name that later points inside is refused then too (no DNS
rebinding): see `checked_addresses`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}


class RefusedUrl(ValueError):
    """A callback URL that may not be used; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL, without brackets for an IPv6 literal
    port: int
    path: str  # path and query, at least "/"
    netloc: str  # the Host header: host, and port when the URL gives one


def parse(url: str) -> Target:
    """The parts of a callback URL, or RefusedUrl."""
    if len(url) > MAX_LENGTH:
        raise RefusedUrl(f"callback_url may have at most {MAX_LENGTH} characters")
    if not url.isascii() or any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise RefusedUrl("callback_url must be ASCII without spaces or control characters "
                         "(percent-encode the rest, and write the host in punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedUrl("callback_url is not a valid URL") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise RefusedUrl("callback_url must be an absolute http or https URL")
    if port == 0:
        raise RefusedUrl("callback_url's port must be 1 to 65535")
    if "@" in parts.netloc:
        raise RefusedUrl("callback_url must not carry a user or password")
    scheme = parts.scheme.lower()
    host = parts.hostname
    netloc = parts.netloc.lower().rstrip(":")  # "host:" means the default port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or SCHEMES[scheme], path, netloc)


def refused_address(address: str) -> str:
    """Why a callback may not go to `address` (an IP), or '' when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour or ip.teredo):
        return "an IPv4 address wrapped in IPv6"
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return "not a public address"
    return ""


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (itself, for an IP), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise RefusedUrl(f"callback_url's host {host} could not be resolved") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(target: Target, allow_private: bool) -> list[str]:
    """The addresses `target` may be reached at: all of them checked (unless
    `allow_private`), else RefusedUrl naming the first that is not allowed."""
    addresses = resolve(target.host, target.port)
    if not allow_private:
        for address in addresses:
            why = refused_address(address)
            if why:
                shown = target.host if target.host == address else f"{target.host} ({address})"
                raise RefusedUrl(f"callback_url's host {shown} is {why}; callbacks go to public addresses only")
    return addresses


def check(url: str, allow_private: bool) -> str:
    """`url`, when it may be a callback URL now; else RefusedUrl."""
    checked_addresses(parse(url), allow_private)
    return url
