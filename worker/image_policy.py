"""Which images a build may name (issue 13): in the farm's registry, under whatever name reaches
it, only its own tenant's (the repositories of its deployments' subdomains, live or tombstoned);
no local image by its id, since the engine's image store holds every tenant's images; no
`ADD` URL on the farm's registry (the engine fetches it, and would read any tenant's blobs); and
no other registry or `ADD` URL the farm's outbound rule refuses (common/outbound.py): the engine
pulls and fetches them itself, from its own host, where the build network's packet filter does
not apply, so `ADD http://127.0.0.1:9191/metrics` would read the worker's metrics into the image.

The engine's classic builder takes any hexadecimal prefix of an image id as a `FROM` or
`COPY --from` (`FROM 7ee3` built on the image 7ee3258c06fe… here), so every all-hex name is
refused, not only 12-64 characters; BuildKit reads such a name as a Docker Hub repository."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from functools import cached_property
from urllib.parse import urlsplit

from common.outbound import HostUnresolved, OutboundRefused, OutboundRule
from worker.dockerfile_images import ImageReference, UncheckableReference, image_references

_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]+$", re.IGNORECASE)
# A registry named without a port is reached on 443, or on 80 when it is insecure.
_DEFAULT_PORTS = frozenset({"443", "80"})

Resolve = Callable[[str], frozenset[str]]


class ImageRefused(Exception):
    """Raised when a Dockerfile names an image its tenant may not use; the message is for the user."""


def split_reference(reference: str) -> tuple[str | None, str]:
    """The registry (host[:port]; None for Docker Hub) and the repository path of an image
    reference, as the engine splits them: the first component is a registry if it has a '.' or
    a ':', is localhost, or has capitals."""
    name = reference.partition("@")[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first.lower() == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = None, name
    head, _, last = path.rpartition("/")
    return domain, (f"{head}/" if head else "") + last.partition(":")[0]


def _host_and_ports(domain: str) -> tuple[str, frozenset[str]]:
    if domain.startswith("["):
        host, _, port = domain[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = domain.partition(":")
    return host.lower(), frozenset({port}) if port else _DEFAULT_PORTS


def resolve(host: str) -> frozenset[str]:
    """The addresses a registry host resolves to here; none for a name that does not resolve."""
    try:
        return frozenset(info[4][0].partition("%")[0] for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, UnicodeError, ValueError):
        return frozenset()


def is_local(address: str) -> bool:
    """Whether a connection to the address stays on this host: loopback, the unspecified
    address, or one of this host's own addresses (a socket can be bound to it; nothing is sent)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:  # not an address of this host (or no IPv6 here)
        return False
    return True


class FarmRegistry:
    """The farm's registry (config `registry`: host[:port][/prefix]) and the other names that
    reach it: the same host in other letters, any name or address resolving to one of its
    addresses, and, when it is on this host, any local address — all with its port."""

    def __init__(self, registry: str, resolver: Resolve = resolve, local: Callable[[str], bool] = is_local):
        domain, _, prefix = registry.partition("/")
        self.host, self.ports = _host_and_ports(domain)
        self.prefix = f"{prefix}/" if prefix else ""
        self.resolver = resolver
        self.local = local

    @cached_property
    def _addresses(self) -> frozenset[str]:
        return self.resolver(self.host)

    @cached_property
    def _on_this_host(self) -> bool:
        return any(self.local(address) for address in self._addresses)

    def reached_by(self, domain: str) -> bool:
        host, ports = _host_and_ports(domain)
        if not ports & self.ports:
            return False
        if host == self.host:
            return True
        addresses = self.resolver(host)
        return bool(addresses & self._addresses) or (
            self._on_this_host and any(self.local(address) for address in addresses)
        )

    def subdomain(self, path: str) -> str | None:
        """The subdomain whose images a repository path of the registry holds, if any."""
        if not path.startswith(self.prefix):
            return None
        name = path.removeprefix(self.prefix)
        return name if name and "/" not in name else None


def check_dockerfile(
    text: str,
    build_args: dict[str, str],
    tenant: str,
    registry: FarmRegistry,
    holder_of: Callable[[str], str | None],
    outbound: OutboundRule,
) -> int:
    """Raises ImageRefused if the Dockerfile names an image the tenant may not use, or one the
    farm cannot read; returns how many distinct images and URLs it checked."""
    try:
        references = image_references(text, build_args)
    except UncheckableReference as e:
        raise ImageRefused(f"The Dockerfile names an image the farm cannot check: {e}") from None
    check_references(references, tenant, registry, holder_of, outbound)
    return len({reference.value for reference in references})


def check_references(
    references: Iterable[ImageReference],
    tenant: str,
    registry: FarmRegistry,
    holder_of: Callable[[str], str | None],
    outbound: OutboundRule,
) -> None:
    """Raises ImageRefused for the first reference the tenant may not use; `holder_of` names the
    tenant a subdomain belongs to (None: nobody's)."""
    for reference in references:
        problem = _problem(reference, tenant, registry, holder_of, outbound)
        if problem:
            raise ImageRefused(
                f"{reference.instruction} {reference.value} (Dockerfile line {reference.line}) {problem}"
            )


def _problem(
    reference: ImageReference,
    tenant: str,
    registry: FarmRegistry,
    holder_of: Callable[[str], str | None],
    outbound: OutboundRule,
) -> str:
    value = reference.value
    if reference.url:
        try:
            address = urlsplit(value).netloc.rpartition("@")[2]
        except ValueError:
            return "is a URL the farm cannot read, so cannot check"
        if address and registry.reached_by(address):
            return "has the engine fetch from the farm's registry, which no build may do: name images in FROM"
        return _unreachable(outbound, value, "has the engine fetch from")
    if _IMAGE_ID.match(value):
        return (
            "names a local image by its id, which the farm refuses: the engine holds every tenant's "
            "images. Name an image by its repository and tag"
        )
    domain, path = split_reference(value)
    if domain is None:
        return ""
    if not registry.reached_by(domain):
        return _unreachable(outbound, f"https://{domain}/", "has the engine pull from")
    subdomain = registry.subdomain(path)
    if subdomain is not None and holder_of(subdomain) == tenant:
        return ""
    return (
        "is in the farm's registry but is not an image of your deployments: a Dockerfile may name "
        "only the images of its own tenant's subdomains there"
    )


def _unreachable(outbound: OutboundRule, url: str, what: str) -> str:
    """Why the engine may not connect where `url` points ("" if it may). A host that does not
    resolve is left to the engine, which fails to reach it the same way."""
    try:
        outbound.check_url(url)
    except HostUnresolved:
        return ""
    except OutboundRefused as e:
        return f"{what} an address builds may not reach: {e}"
    return ""
