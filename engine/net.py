"""Small network helpers shared across layers: loopback names, who is calling (``ClientAddress``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` (and ``*.localhost``) or a loopback IP address, with or without IPv6 brackets."""
    if not host:
        return False
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    """Resolves the client address of a request (SECURITY 30: forwarded headers only from trusted proxies)."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in trusted_proxies
        )

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def of(self, request: web.Request) -> str:
        peer = request.remote or ""
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        # walk from the nearest hop back; the first address that is not a trusted proxy is the client
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer

    def scheme(self, request: web.Request) -> str:
        if self._trusted and self._is_trusted(request.remote or ""):
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                return proto
        return request.scheme
