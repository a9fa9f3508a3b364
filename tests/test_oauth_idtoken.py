"""engine.oauth.idtoken: id_token signature, algorithm allowlist, claims, JWKS re-fetch on unknown kid."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from engine.errors import ProviderError
from engine.oauth.idtoken import JwksCache, check_claims, validate_id_token

ISS = "https://op.example"
CID = "client-1"


class Jwks:
    """A key set served through a real JwksCache; counts fetches."""

    def __init__(self, *keys: Any) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.cache = JwksCache(self.get_json)

    async def get_json(self, url: str, what: str) -> dict[str, Any]:
        self.fetches += 1
        return KeySet(self.keys).as_dict(private=False)


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISS, "aud": CID, "sub": "alice", "iat": now, "exp": now + 300, "nonce": "n1", **over}


def sign(key: Any, alg: str, payload: dict[str, Any]) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, payload, key)


async def check(
    token: str, jwks: Jwks, *, nonce: str | None = "n1", algs: tuple[str, ...] = ("RS256", "ES256")
) -> dict[str, Any]:
    return await validate_id_token(
        token,
        jwks=jwks.cache,
        jwks_uri="https://op.example/jwks",
        issuer=ISS,
        client_id=CID,
        nonce=nonce,
        algorithms=algs,
    )


async def test_valid_rs256_and_es256() -> None:
    """A well-formed token signed with a published RS256 or ES256 key validates."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "e1"})
    jwks = Jwks(rsa, ec)
    assert (await check(sign(rsa, "RS256", claims()), jwks))["sub"] == "alice"
    assert (await check(sign(ec, "ES256", claims()), jwks))["sub"] == "alice"


async def test_algorithm_allowlist() -> None:
    """HS256 (or any algorithm outside the allowlist) is refused."""
    oct_key = OctKey.generate_key(256, parameters={"kid": "h1"})
    token = jwt.encode({"alg": "HS256", "kid": "h1"}, claims(), oct_key)
    with pytest.raises(ProviderError, match="HS256"):
        await check(token, Jwks(oct_key))


async def test_bad_signature() -> None:
    """A token signed by a key with a published kid but different material fails."""
    published = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    attacker = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    with pytest.raises(ProviderError) as info:
        await check(sign(attacker, "RS256", claims()), Jwks(published))
    assert info.value.kind == "invalid_id_token"


async def test_unknown_kid_refetches_once() -> None:
    """An unknown kid causes exactly one JWKS re-fetch, which finds a newly published key."""
    old = RSAKey.generate_key(2048, parameters={"kid": "old"})
    new = RSAKey.generate_key(2048, parameters={"kid": "new"})
    jwks = Jwks(old)
    await check(sign(old, "RS256", claims()), jwks)
    assert jwks.fetches == 1
    jwks.keys.append(new)
    await check(sign(new, "RS256", claims()), jwks)
    assert jwks.fetches == 2
    other = RSAKey.generate_key(2048, parameters={"kid": "other"})
    with pytest.raises(ProviderError, match="does not publish"):
        await check(sign(other, "RS256", claims()), jwks)
    assert jwks.fetches == 2  # re-fetch is rate limited


@pytest.mark.parametrize(
    ("over", "nonce", "message"),
    [
        ({"iss": "https://evil.example"}, "n1", "iss"),
        ({"aud": "other"}, "n1", "aud"),
        ({"aud": [CID, "other"]}, "n1", "azp"),
        ({"azp": "other"}, "n1", "azp"),
        ({"exp": int(time.time()) - 600}, "n1", "expired"),
        ({"iat": int(time.time()) + 600}, "n1", "future"),
        ({"nonce": "n2"}, "n1", "nonce"),
        ({"sub": ""}, "n1", "sub"),
    ],
)
def test_claim_checks(over: dict[str, Any], nonce: str, message: str) -> None:
    """Each claim problem is refused with a message naming the claim."""
    with pytest.raises(ProviderError, match=message):
        check_claims(claims(**over), issuer=ISS, client_id=CID, nonce=nonce)


def test_leeway() -> None:
    """Expiry and issue time within 120 s of leeway are accepted."""
    now = time.time()
    check_claims(claims(exp=int(now) - 60, iat=int(now) + 60), issuer=ISS, client_id=CID, nonce="n1", now=now)


async def test_not_a_jwt() -> None:
    """A value that is not a JWT is refused without a traceback."""
    with pytest.raises(ProviderError, match="not a JWT"):
        await check("garbage", Jwks(RSAKey.generate_key(2048, parameters={"kid": "r"})))
