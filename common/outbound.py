"""The outbound address rule: where the farm may connect on a tenant's behalf (git sources).

A tenant names a host (a deployment's `repo_url`); the farm resolves it and connects from inside
its own network, so without a rule the farm reaches for the tenant what only the farm should:
loopback services, private (RFC 1918, CGNAT, ULA), link-local (the cloud metadata address
169.254.169.254), unspecified, multicast or otherwise non-public addresses. Every such address is
refused unless the operator opens its range on purpose (BUILDFARM_OUTBOUND_ALLOW, e.g. an
internal git server). Every address a name resolves to must pass: a name with one public and one
private address is refused, since the client may pick either.

The API checks a host when a deployment is created (a 422 for the tenant); the worker checks it
again right before it connects, since DNS can change, and then connects to exactly the addresses
it checked (worker/source.py pins them), so a rebinding between check and connect cannot win.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Resolves (host, port) to addresses, as text; raises OSError for a name that does not resolve.
Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418, "ssh": 22}
# IPv6 prefixes that carry an IPv4 address the packets end up at (NAT64's well-known prefix,
# 6to4): the embedded address must pass too.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A DNS name: labels of letters, digits, '-' or '_', the last one not all digits (a name ending in
# a number is an IPv4 address in one of inet_aton's forms, 2130706433 or 0x7f.1, which
# resolvers and curl read differently), optionally a final '.'.
_DNS_NAME = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}\.)*(?=[A-Za-z0-9_-]*[A-Za-z_-])[A-Za-z0-9_-]{1,63}\.?$")


class OutboundRefused(ValueError):
    """Raised when a URL names a host the farm must not connect to; the message says why."""


class HostUnresolved(OutboundRefused):
    """Raised when a URL's host name does not resolve."""


def _system_resolver(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (`10.1.0.0/16, fd00::/8`); ValueError names the first bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or a CIDR range") from None
    return tuple(networks)


def _kind(address: Address) -> str | None:
    """What makes `address` one the farm does not connect to by default, or None if it is public."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def _tunnelled_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through 6to4 or NAT64, if any."""
    if address.version != 6:
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class Target:
    """A URL's host and port, and the addresses it was checked at (connect to these only)."""

    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class OutboundRule:
    """Which addresses the farm may connect to for a tenant: public ones, and `allowed` ranges."""

    allowed: tuple[Network, ...] = ()
    resolve: Resolver = _system_resolver

    def refusal(self, address: Address) -> str | None:
        """Why the farm does not connect to `address`, or None if it may."""
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:a.b.c.d is the host a.b.c.d
        if any(address in network for network in self.allowed):
            return None
        tunnelled = _tunnelled_ipv4(address)
        return _kind(address) or (_kind(tunnelled) if tunnelled is not None else None)

    def check_url(self, url: str) -> Target | None:
        """The host of `url` checked (OutboundRefused says why not); None for a URL without a
        network host (a `file://` path, when an operator allows that scheme)."""
        try:
            parts = urlsplit(url)
        except ValueError as e:  # a bracketed host that is no IPv6 address
            raise OutboundRefused(f"the URL cannot be read: {e}") from None
        if not parts.netloc:
            return None
        host, port = _host_and_port(parts)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = self.resolve(host, port)
            except (OSError, UnicodeError):
                raise HostUnresolved(f"the host '{host}' does not resolve") from None
            if not addresses:
                raise HostUnresolved(f"the host '{host}' does not resolve")
        for text in addresses:
            reason = self.refusal(ipaddress.ip_address(text.split("%")[0]))
            if reason is not None:
                where = f"is {reason}" if literal is not None else f"resolves to {text}, {reason}"
                raise OutboundRefused(
                    f"the host '{host}' {where}: the farm does not connect there "
                    "(an operator opens address ranges with BUILDFARM_OUTBOUND_ALLOW)"
                )
        return Target(host, port, tuple(addresses))


def _host_and_port(parts: SplitResult) -> tuple[str, int]:
    """The host of a URL as clients read it: a DNS name or an IP literal, nothing else (hosts
    that parsers read differently — userinfo, backslashes, numeric forms — are refused)."""
    if "@" in parts.netloc:
        raise OutboundRefused("the URL carries credentials (user:password@): they are not accepted")
    try:
        port = parts.port
    except ValueError:
        raise OutboundRefused("the URL's port is not a number from 0 to 65535") from None
    host = parts.hostname or ""
    bracketed = parts.netloc.startswith("[")
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OutboundRefused(f"'[{host}]' is not an IPv6 address") from None
    elif not _is_ipv4(host) and not _DNS_NAME.match(host):
        raise OutboundRefused(f"the host '{host}' is not a DNS name or an IP address")
    return host, DEFAULT_PORTS.get(parts.scheme.lower(), 0) if port is None else port


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def redact_userinfo(text: str) -> str:
    """`text` with the user:password part of every URL in it replaced: stored deployments from
    before credentials were refused, and git's messages quoting their URL, never show them."""
    return _USERINFO.sub(r"\1***@", text)


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]*@")
