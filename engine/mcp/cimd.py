"""Client ID Metadata Documents: an https ``client_id`` names the JSON document that describes the client.

Fetched with an SSRF guard (SECURITY.md 37): https only (http only for a loopback host in
development), every address the name resolves to must be public (loopback only in development),
the connection goes to the addresses that were checked, no redirects, a size cap, a timeout; the
document's ``client_id`` must be its own URL, its ``redirect_uris`` are the only ones allowed, and
it describes a public client (``token_endpoint_auth_method: none``). Good documents are cached.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from engine import __version__
from engine.config.mcp import redirect_uri_ok
from engine.config.model import ClientMetadataConfig
from engine.httpbody import BodyTooLarge, read_body

CACHE_SIZE = 1000


class ClientMetadataError(ValueError):
    """The document cannot be used; the message says why (never its content)."""


def is_metadata_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def address_allowed(ip: str, *, loopback: bool) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return loopback
    return addr.is_global and not addr.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves a name and refuses it when any of its addresses is not public."""

    def __init__(self, loopback: bool) -> None:
        self.loopback = loopback
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if not address_allowed(r["host"], loopback=self.loopback):
                raise ClientMetadataError(f"{host} resolves to an address that is not public")
        return results

    async def close(self) -> None:
        await self._inner.close()


class ClientMetadataFetcher:
    def __init__(
        self, config: Callable[[], ClientMetadataConfig], *, development: Callable[[], bool], base_dir: Path
    ) -> None:
        self.config = config
        self.development = development
        self.base_dir = base_dir
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._sessions: dict[tuple[bool, str | None], aiohttp.ClientSession] = {}

    def check_url(self, url: str) -> None:
        if len(url) > 2048:
            raise ClientMetadataError("the client_id URL is too long")
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = self.development() and _is_loopback(host)
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ClientMetadataError("a client metadata document must be served over https")
        if not host or parts.username or parts.password or parts.fragment or parts.path in ("", "/"):
            raise ClientMetadataError(
                "a client_id URL needs a host and a path, without credentials or fragment"
            )
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked when it is resolved
        if not address_allowed(host, loopback=self.development()):
            raise ClientMetadataError(f"{host} is not a public address")

    def _session(self) -> aiohttp.ClientSession:
        cfg = self.config()
        key = (self.development(), cfg.ca_file)
        session = self._sessions.get(key)
        if session is None or session.closed:
            context = ssl.create_default_context()
            if cfg.ca_file:
                context.load_verify_locations(cafile=str(self.base_dir / cfg.ca_file))
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(key[0]), ssl=context, limit=20)
            session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": f"Keyturn/{__version__}"}
            )
            self._sessions[key] = session
        return session

    async def fetch(self, url: str) -> dict[str, Any]:
        """The checked document of ``url`` (cached), or :class:`ClientMetadataError`."""
        now = time.monotonic()
        cached = self._cache.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        self.check_url(url)
        cfg = self.config()
        try:
            async with self._session().get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=float(cfg.timeout)),
                headers={"Accept": "application/json"},
            ) as resp:
                if resp.status != 200:
                    raise ClientMetadataError(f"the client metadata document answered HTTP {resp.status}")
                body = await read_body(
                    resp.content, cfg.max_bytes, length=resp.content_length, what="the document"
                )
        except BodyTooLarge as exc:
            raise ClientMetadataError(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            reason = exc.__cause__ if isinstance(exc.__cause__, ClientMetadataError) else None
            if reason is not None:
                raise reason from None
            raise ClientMetadataError(
                f"the client metadata document cannot be fetched ({type(exc).__name__})"
            ) from None
        document = self.validate(url, body)
        self._cache[url] = (now + float(cfg.cache_ttl), document)
        self._cache.move_to_end(url)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return document

    @staticmethod
    def validate(url: str, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except ValueError:
            raise ClientMetadataError("the client metadata document is not JSON") from None
        if not isinstance(doc, dict):
            raise ClientMetadataError("the client metadata document is not a JSON object")
        if doc.get("client_id") != url:
            raise ClientMetadataError("the document's client_id is not its own URL")
        uris = doc.get("redirect_uris")
        if (
            not isinstance(uris, list)
            or not uris
            or not all(isinstance(u, str) and redirect_uri_ok(u) for u in uris)
        ):
            raise ClientMetadataError("redirect_uris must be a list of https (or loopback http) URLs")
        method = doc.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise ClientMetadataError(
                "a client metadata document describes a public client (auth method none)"
            )
        for key in ("client_secret", "client_secret_expires_at"):
            if key in doc:
                raise ClientMetadataError(f"a client metadata document must not hold {key}")
        name = doc.get("client_name")
        return {
            "client_id": url,
            "redirect_uris": uris,
            "client_name": name[:200] if isinstance(name, str) else None,
            "grant_types": [
                g for g in doc.get("grant_types") or ["authorization_code"] if isinstance(g, str)
            ],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": doc.get("scope") if isinstance(doc.get("scope"), str) else None,
        }

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def _is_loopback(host: str) -> bool:
    from engine.net import is_loopback_host

    return is_loopback_host(host)
