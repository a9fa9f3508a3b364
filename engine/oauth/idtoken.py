"""OpenID Connect Core 3.1.3.7: id_token validation, and a JWKS cache with one re-fetch on an unknown kid.

Signatures are checked with joserfc (authlib's successor for JOSE, same maintainers) against an
algorithm allowlist; the claims (iss, aud, azp, exp, iat, nonce) are checked here, with leeway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from engine import jsontext
from engine.errors import ProviderError
from engine.oauth.callback import nonce_matches

GetJson = Callable[[str, str], Awaitable[dict[str, Any]]]
JWKS_TTL = 3600.0
REFETCH_MIN_INTERVAL = 30.0


class JwksCache:
    """Key sets by URI; a token with an unknown kid triggers one re-fetch (rate limited)."""

    def __init__(self, get_json: GetJson) -> None:
        self._get_json = get_json
        self._sets: dict[str, tuple[float, KeySet]] = {}  # uri -> (expires, keys)
        self._forced: dict[str, float] = {}  # uri -> when an unknown kid last forced a fetch
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, uri: str, *, force: bool = False) -> KeySet:
        now = time.monotonic()
        cached = self._sets.get(uri)
        if cached and not force and cached[0] > now:
            return cached[1]
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:
            cached = self._sets.get(uri)
            now = time.monotonic()
            if cached and not force and cached[0] > now:
                return cached[1]
            if cached and force:
                if now - self._forced.get(uri, -REFETCH_MIN_INTERVAL) < REFETCH_MIN_INTERVAL:
                    return cached[1]
                self._forced[uri] = now
            data = await self._get_json(uri, "jwks")
            try:
                keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise ProviderError(f"the key set at {uri} is not valid JWKS", kind="bad_metadata") from None
            self._sets[uri] = (now + JWKS_TTL, keys)
            return keys


def _header(token: str) -> dict[str, Any]:
    import base64

    try:
        head = token.split(".")[0]
        data = jsontext.parse_peer(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, IndexError):
        raise ProviderError("id_token is not a JWT", kind="invalid_id_token") from None
    if not isinstance(data, dict):
        raise ProviderError("id_token is not a JWT", kind="invalid_id_token")
    return data


def _kids(keys: KeySet) -> set[str]:
    return {str(k.kid) for k in keys.keys if k.kid}


async def validate_id_token(
    token: str,
    *,
    jwks: JwksCache,
    jwks_uri: str,
    issuer: str,
    client_id: str,
    nonce: str | None,
    algorithms: Collection[str],
    leeway: float = 120.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The id_token's claims after every check, or :class:`ProviderError` (kind ``invalid_id_token``)."""
    header = _header(token)
    alg = header.get("alg")
    if alg not in algorithms:
        raise ProviderError(
            f"id_token is signed with {str(alg)[:20]!r}, not one of {', '.join(algorithms)}",
            kind="invalid_id_token",
        )
    keys = await jwks.get(jwks_uri)
    kid = header.get("kid")
    if kid is not None and str(kid) not in _kids(keys):
        keys = await jwks.get(jwks_uri, force=True)
        if str(kid) not in _kids(keys):
            raise ProviderError(
                "id_token is signed with a key the provider does not publish", kind="invalid_id_token"
            )
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except JoseError as exc:
        raise ProviderError(
            f"id_token signature is not valid ({exc.error})", kind="invalid_id_token"
        ) from None
    claims = dict(decoded.claims)
    check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, leeway=leeway, now=now)
    return claims


def check_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    leeway: float = 120.0,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now

    def fail(msg: str) -> ProviderError:
        return ProviderError(f"id_token {msg}", kind="invalid_id_token")

    if claims.get("iss") != issuer:
        raise fail(f"iss is {str(claims.get('iss'))[:200]!r}, expected {issuer!r}")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    if client_id not in audiences:
        raise fail("aud does not include this client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise fail("azp is not this client")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise fail("has no exp")
    if exp + leeway < now:
        raise fail("has expired")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise fail("has no iat")
    if iat - leeway > now:
        raise fail("was issued in the future")
    if not isinstance(claims.get("sub"), str) or not claims.get("sub"):
        raise fail("has no sub")
    if nonce is not None and not nonce_matches(claims, nonce):
        raise fail("nonce does not match the flow's")
