"""Where the Openfabric client may send a request, and whether the token goes with it.

An app's answer names URLs (an output field holding `http://...`, a redirect's Location) and a hostile or
compromised app can name anything: another service on this host, the cloud metadata address, a private
network. The rules:

* The configured app's origin (scheme, host, port as configured: ATELIER_TEXT_TO_IMAGE_APP /
  ATELIER_IMAGE_TO_3D_APP) is always allowed, and it is the only origin the token
  (ATELIER_OPENFABRIC_TOKEN) is sent to. Another port on the same host is another origin.
* Any other origin only when its host is in ATELIER_OPENFABRIC_ALLOWED_HOSTS (`host` for any port,
  `host:port` for one), and only when every address the name resolves to is public, or of a kind the
  configured app itself resolves to (an app on loopback may name another loopback service the operator
  allow-listed; an app on the internet may not name 127.0.0.1 or 169.254.169.254, whatever DNS name
  points there). Unspecified (0.0.0.0), multicast and reserved addresses are treated the same way.
* Only http and https.
* Redirects are followed by the client itself (httpx's own following is off), each hop checked by these
  rules, at most MAX_REDIRECTS.

The address check resolves the name just before the request; a name that changes its answer between the
check and the connection (DNS rebinding) is outside what this checks (see docs/openfabric.md).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import OutboundRefused, Unreachable

log = logging.getLogger("atelier.openfabric")

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host in lower case, port) of an http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number, an unbalanced [ ...
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


def parse_allowed_hosts(value: str) -> list[tuple[str, int | None]]:
    """'cdn.example.com, 10.0.0.5:9000' -> [('cdn.example.com', None), ('10.0.0.5', 9000)]; ValueError on a bad entry."""
    out: list[tuple[str, int | None]] = []
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if "/" in item or "@" in item or any(c.isspace() for c in item):
            raise ValueError(f"{raw.strip()!r} is not a host or host:port (no scheme, path or user)")
        host, port = item, None
        if item.startswith("["):  # [::1]:8080
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
            if rest and not rest.startswith(":"):
                raise ValueError(f"{raw.strip()!r} is not a host or host:port")
        elif item.count(":") == 1:
            host, port = item.split(":")
        if port is not None:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{raw.strip()!r} has no valid port")
            port = int(port)
        host = host.rstrip(".")
        if not host or not all(c.isalnum() or c in ".-_:" for c in host):
            raise ValueError(f"{raw.strip()!r} is not a host name or address")
        out.append((host, port))
    return out


def address_kind(address: str) -> str:
    """public | loopback | link-local | private | unspecified | multicast | reserved."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_global:
        return "public"
    return "reserved"  # shared (100.64/10), documentation, benchmarking, 240/4 ...


async def resolve_kinds(host: str, port: int) -> set[str]:
    """The kinds of every address `host` resolves to (an address literal: its own kind)."""
    try:
        return {address_kind(host)}
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {address_kind(info[4][0]) for info in infos}


@dataclass
class OutboundPolicy:
    app_url: str
    allowed: list[tuple[str, int | None]] = field(default_factory=list)
    _app_kinds: set[str] | None = None

    @property
    def app_origin(self) -> tuple[str, str, int] | None:
        return origin_of(self.app_url)

    def is_app(self, url: str) -> bool:
        """Whether `url` is on the configured app's origin (the only place the token goes)."""
        target = origin_of(url)
        return target is not None and target == self.app_origin

    async def app_kinds(self) -> set[str]:
        if self._app_kinds is None:
            origin = self.app_origin
            try:
                self._app_kinds = await resolve_kinds(origin[1], origin[2]) if origin else set()
            except OSError:  # the app itself does not resolve: nothing non-public is vouched for
                self._app_kinds = set()
        return self._app_kinds

    async def check(self, url: str, what: str) -> bool:
        """Raise OutboundRefused unless `url` may be requested; return whether the token goes with it."""
        target = origin_of(url)
        if target is None:
            raise OutboundRefused(f"{what}: refused a URL that is not http(s) to a host")
        if target == self.app_origin:
            return True
        scheme, host, port = target
        if not any(host == allowed_host and allowed_port in (None, port) for allowed_host, allowed_port in self.allowed):
            log.warning("openfabric step=outbound refused=%r reason=not-allowed what=%s", f"{host}:{port}"[:200], what)
            raise OutboundRefused(f"{what}: refused a request to a host other than the app's "
                                  "(not in ATELIER_OPENFABRIC_ALLOWED_HOSTS)")
        try:
            kinds = await resolve_kinds(host, port)
        except OSError:
            raise Unreachable(f"{what}: an allowed host does not resolve") from None
        app_kinds = await self.app_kinds()
        bad = sorted(kind for kind in kinds if kind != "public" and kind not in app_kinds)
        if bad:
            log.warning("openfabric step=outbound refused=%r reason=%s what=%s", f"{host}:{port}"[:200], ",".join(bad), what)
            raise OutboundRefused(f"{what}: refused a request to an allowed host that resolves to a {' and '.join(bad)} address "
                                  f"(only the app's own kind of address, or public ones, may be reached)")
        return False
