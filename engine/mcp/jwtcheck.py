"""``mcp.auth: jwt``: access tokens issued by the organisation's authorization server (RFC 9068).

The issuer's metadata is found by discovery (RFC 8414 ``/.well-known/oauth-authorization-server``,
then OpenID ``/.well-known/openid-configuration``) unless ``mcp.jwt.jwks_uri`` is given; keys come
from its JWKS (one rate-limited re-fetch for an unknown ``kid``). A token counts when its signature
checks with an allowed algorithm, ``iss`` is the issuer, ``aud`` holds the audience (default: this
MCP endpoint's URL), it has not expired, it carries ``mcp.jwt.scopes``, and ``user_claim`` is a string.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from joserfc import jwt
from joserfc.errors import JoseError

from engine.config.model import Config
from engine.errors import ProviderError
from engine.httpbody import BodyTooLarge, read_body
from engine.oauth.idtoken import JwksCache, _header, _kids

log = structlog.get_logger("keyturn.mcp")

LEEWAY = 60.0
METADATA_TTL = 3600.0
MAX_DOCUMENT = 64 * 1024


class JwtVerifier:
    def __init__(self, session: aiohttp.ClientSession, config: Callable[[], Config]) -> None:
        self.session = session
        self.config = config
        self.jwks = JwksCache(self._get_json)
        self._metadata: dict[str, tuple[float, str]] = {}  # issuer -> (expires, jwks_uri)

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self.session.get(url, headers={"Accept": "application/json"}, allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:  # fmt: skip
                if resp.status != 200:
                    raise ProviderError(f"{what} answered HTTP {resp.status}", kind="bad_metadata")
                body = await read_body(resp.content, MAX_DOCUMENT, length=resp.content_length, what=what)
        except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
            raise ProviderError(
                f"{what} cannot be fetched ({type(exc).__name__})", kind="bad_metadata"
            ) from None
        try:
            data = json.loads(body)
        except ValueError:
            raise ProviderError(f"{what} is not JSON", kind="bad_metadata") from None
        if not isinstance(data, dict):
            raise ProviderError(f"{what} is not a JSON object", kind="bad_metadata")
        return data

    async def jwks_uri(self) -> str:
        settings = self.config().mcp.jwt
        assert settings is not None
        if settings.jwks_uri:
            return settings.jwks_uri
        cached = self._metadata.get(settings.issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        issuer = settings.issuer.rstrip("/")
        parts = urlsplit(issuer)
        origin = f"{parts.scheme}://{parts.netloc}"
        candidates = [
            f"{origin}/.well-known/oauth-authorization-server{parts.path}",
            f"{issuer}/.well-known/openid-configuration",
        ]
        last: ProviderError | None = None
        for url in candidates:
            try:
                meta = await self._get_json(url, "the issuer's metadata")
            except ProviderError as exc:
                last = exc
                continue
            if meta.get("issuer") != settings.issuer or not isinstance(meta.get("jwks_uri"), str):
                last = ProviderError(
                    "the issuer's metadata names another issuer or no jwks_uri", kind="bad_metadata"
                )
                continue
            self._metadata[settings.issuer] = (time.monotonic() + METADATA_TTL, meta["jwks_uri"])
            return str(meta["jwks_uri"])
        assert last is not None
        raise last

    async def verify(self, token: str, resource: str) -> dict[str, Any] | None:
        """``{"user", "client_id"}`` of a valid token, else None (the reason is logged, never the token)."""
        settings = self.config().mcp.jwt
        if settings is None or token.count(".") != 2 or len(token) > 16384:
            return None
        try:
            header = _header(token)
            if header.get("alg") not in settings.algorithms:
                raise ProviderError("signed with an algorithm not allowed", kind="invalid_token")
            uri = await self.jwks_uri()
            keys = await self.jwks.get(uri)
            kid = header.get("kid")
            if kid is not None and str(kid) not in _kids(keys):
                keys = await self.jwks.get(uri, force=True)
            decoded = jwt.decode(token, keys, algorithms=list(settings.algorithms))
        except (ProviderError, JoseError, ValueError) as exc:
            log.info("mcp_jwt_refused", reason=getattr(exc, "kind", type(exc).__name__))
            return None
        claims = dict(decoded.claims)
        reason = self._check(claims, settings.audience or resource)
        if reason is not None:
            log.info("mcp_jwt_refused", reason=reason)
            return None
        return {
            "user": claims[settings.user_claim],
            "client_id": claims.get("client_id") or claims.get("azp"),
        }

    def _check(self, claims: dict[str, Any], audience: str) -> str | None:
        settings = self.config().mcp.jwt
        assert settings is not None
        now = time.time()
        if claims.get("iss") != settings.issuer:
            return "iss"
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in audiences:
            return "aud"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + LEEWAY < now:
            return "exp"
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - LEEWAY > now:
            return "nbf"
        granted = set(str(claims.get("scope") or "").split())
        if not set(settings.scopes) <= granted:
            return "scope"
        user = claims.get(settings.user_claim)
        if not isinstance(user, str) or not user or len(user) > 256:
            return "user_claim"
        return None
