"""The OAuth 2.0 client adapter: the provider's endpoints over aiohttp, with authlib's request pieces.

:class:`OAuthClient` builds authorization URLs (RFC 6749 4.1.1 + RFC 7636 PKCE + OIDC nonce),
exchanges codes (4.1.3), refreshes (6), revokes (RFC 7009), introspects (RFC 7662), fetches user
info, discovers OIDC metadata (cached, issuer checked) and validates id_tokens against a cached
JWKS. Every network failure becomes :class:`ProviderError` with a bounded ``kind``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from engine.errors import ProviderError
from engine.httpbody import BodyTooLarge, read_body
from engine.oauth.idtoken import JwksCache, validate_id_token
from engine.oauth.tokens import TokenSet, decode_body, parse_token_answer, raise_for_answer
from engine.providers.model import Provider
from engine.providers.schema import RequestSpec

MAX_ANSWER_BYTES = 1_048_576  # discovery, JWKS, user info
MAX_TOKEN_ANSWER_BYTES = 65_536  # SECURITY.md 11
DISCOVERY_TTL = 3600.0


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """A provider's endpoints after discovery (explicit config wins over discovered values)."""

    authorization: str
    token: str
    userinfo: str | None = None
    revocation: str | None = None
    introspection: str | None = None
    jwks_uri: str | None = None
    issuer: str | None = None
    iss_parameter_supported: bool = False


@dataclasses.dataclass
class _Answer:
    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str]


class _Client:
    """What authlib's ClientAuth reads."""

    def __init__(self, client_id: str, client_secret: str | None) -> None:
        self.client_id = client_id
        self.client_secret = client_secret


class OAuthClient:
    def __init__(self, session: aiohttp.ClientSession, *, timeout: float = 15.0) -> None:
        self.session = session
        self.timeout = timeout
        self._discovery: dict[str, tuple[float, dict[str, Any]]] = {}
        self._discovery_locks: dict[str, asyncio.Lock] = {}
        self.jwks = JwksCache(self._get_json)

    # ---- discovery -----------------------------------------------------------------------
    async def endpoints(self, provider: Provider) -> Endpoints:
        spec = provider.oauth2
        meta: Mapping[str, Any] = {}
        if spec.issuer and spec.discovery:
            meta = await self.discover(spec.issuer)

        def pick(request: RequestSpec | None, key: str) -> str | None:
            if request is not None and request.endpoint:
                return request.endpoint
            value = meta.get(key)
            return value if isinstance(value, str) else None

        authorization = pick(spec.authorization_request, "authorization_endpoint")
        token = pick(spec.token_request, "token_endpoint")
        if not authorization or not token:
            raise ProviderError(
                f"provider {provider.id!r} has no authorization or token endpoint", kind="bad_metadata"
            )
        return Endpoints(
            authorization=authorization,
            token=token,
            userinfo=pick(spec.user_info, "userinfo_endpoint") if spec.user_info or meta else None,
            revocation=pick(spec.revocation_request, "revocation_endpoint"),
            introspection=pick(spec.token_introspection, "introspection_endpoint"),
            jwks_uri=spec.jwks_uri
            or (meta.get("jwks_uri") if isinstance(meta.get("jwks_uri"), str) else None),
            issuer=spec.issuer,
            iss_parameter_supported=bool(meta.get("authorization_response_iss_parameter_supported")),
        )

    async def discover(self, issuer: str) -> dict[str, Any]:
        """OIDC discovery metadata for ``issuer``, cached; its ``issuer`` must equal ours exactly."""
        now = time.monotonic()
        cached = self._discovery.get(issuer)
        if cached and cached[0] > now:
            return cached[1]
        lock = self._discovery_locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            cached = self._discovery.get(issuer)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            meta = await self._get_json(url, "discovery")
            if meta.get("issuer") != issuer:
                raise ProviderError(
                    f"discovery at {url} names issuer {str(meta.get('issuer'))[:200]!r}, expected {issuer!r}",
                    kind="bad_metadata",
                )
            self._discovery[issuer] = (time.monotonic() + DISCOVERY_TTL, meta)
            return meta

    # ---- authorization request -----------------------------------------------------------
    @staticmethod
    def code_challenge(verifier: str) -> str:
        challenge: str = create_s256_code_challenge(verifier)
        return challenge

    def authorization_url(
        self,
        provider: Provider,
        endpoints: Endpoints,
        *,
        redirect_uri: str,
        state: str,
        scopes: tuple[str, ...],
        code_verifier: str | None,
        nonce: str | None,
    ) -> str:
        spec = provider.oauth2
        params: dict[str, str] = dict(spec.authorization_request.params)
        params.pop("response_type", None)
        response_type = "code"  # the authorization code grant only (SECURITY.md 1): never implicit
        if scopes:
            params[spec.scope_param] = spec.scope_delimiter.join(scopes)
        if code_verifier is not None and spec.pkce.enabled:
            params["code_challenge"] = self.code_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        if nonce is not None:
            params["nonce"] = nonce
        if spec.resource is not None:  # RFC 8707: the token is for this resource (an upstream MCP server)
            params["resource"] = spec.resource
        url: str = prepare_grant_uri(
            endpoints.authorization,
            provider.client_id,
            response_type,
            redirect_uri=redirect_uri,
            state=state,
            **params,
        )
        return url

    # ---- token endpoint ------------------------------------------------------------------
    async def exchange_code(
        self, provider: Provider, *, code: str, redirect_uri: str, code_verifier: str | None
    ) -> TokenSet:
        spec = provider.oauth2
        endpoints = await self.endpoints(provider)
        params = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None and spec.pkce.enabled:
            params["code_verifier"] = code_verifier
        if spec.resource is not None:
            params["resource"] = spec.resource
        answer = await self._send(provider, spec.token_request, endpoints.token, params, "token request")
        return parse_token_answer(
            spec,
            spec.token_request,
            status=answer.status,
            content_type=answer.content_type,
            body=answer.body,
            headers=answer.headers,
            what=f"{provider.id} token request",
        )

    async def refresh(
        self, provider: Provider, refresh_token: str, *, scopes: tuple[str, ...] | None = None
    ) -> TokenSet:
        spec = provider.oauth2
        request = spec.refresh_request or spec.token_request
        endpoint = request.endpoint or (await self.endpoints(provider)).token
        params = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes:
            params["scope"] = spec.scope_delimiter.join(scopes)
        if spec.resource is not None:
            params["resource"] = spec.resource
        answer = await self._send(provider, request, endpoint, params, "refresh request")
        return parse_token_answer(
            spec,
            request if request.response_map else spec.token_request,
            status=answer.status,
            content_type=answer.content_type,
            body=answer.body,
            headers=answer.headers,
            what=f"{provider.id} refresh request",
        )

    async def revoke(self, provider: Provider, token: str, *, token_type_hint: str | None = None) -> bool:
        """RFC 7009 revocation; False when the provider has no revocation endpoint."""
        spec = provider.oauth2
        endpoints = await self.endpoints(provider)
        if not endpoints.revocation:
            return False
        request = spec.revocation_request or RequestSpec(endpoint=endpoints.revocation)
        params = {"token": token}
        if token_type_hint:
            params["token_type_hint"] = token_type_hint
        answer = await self._send(provider, request, endpoints.revocation, params, "revocation request")
        data = _maybe_json(answer)
        raise_for_answer(f"{provider.id} revocation request", answer.status, data, answer.headers, request)
        return True

    async def introspect(self, provider: Provider, token: str) -> dict[str, Any]:
        spec = provider.oauth2
        endpoints = await self.endpoints(provider)
        if not endpoints.introspection:
            raise ProviderError(
                f"provider {provider.id!r} has no introspection endpoint", kind="bad_metadata"
            )
        request = spec.token_introspection or RequestSpec(endpoint=endpoints.introspection)
        answer = await self._send(
            provider, request, endpoints.introspection, {"token": token}, "introspection"
        )
        data = _maybe_json(answer)
        raise_for_answer(f"{provider.id} introspection", answer.status, data, answer.headers, request)
        if data is None:
            raise ProviderError(f"{provider.id} introspection: the answer is not JSON", kind="bad_response")
        return data

    async def introspected_expiry(self, provider: Provider, access_token: str) -> datetime | None:
        """When the token expires per RFC 7662 introspection (``exp``); None when unknown or unavailable."""
        try:
            data = await self.introspect(provider, access_token)
        except ProviderError:
            return None
        exp = data.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return datetime.fromtimestamp(exp, UTC)
        return None

    async def userinfo(self, provider: Provider, access_token: str) -> dict[str, Any]:
        spec = provider.oauth2
        endpoints = await self.endpoints(provider)
        if not endpoints.userinfo:
            return {}
        request = spec.user_info or RequestSpec(endpoint=endpoints.userinfo, method="GET")
        headers = {"Accept": "application/json", **request.headers, "Authorization": f"Bearer {access_token}"}
        answer = await self._request(
            request.method, endpoints.userinfo, headers=headers, data=None, what="user info"
        )
        data = _maybe_json(answer)
        raise_for_answer(f"{provider.id} user info", answer.status, data, answer.headers, request)
        if data is None:
            raise ProviderError(f"{provider.id} user info: the answer is not JSON", kind="bad_response")
        return data

    async def validate_id_token(
        self, provider: Provider, id_token: str, *, nonce: str | None, leeway: float = 120.0
    ) -> dict[str, Any]:
        endpoints = await self.endpoints(provider)
        if not endpoints.jwks_uri or not endpoints.issuer:
            raise ProviderError(
                f"provider {provider.id!r} sent an id_token but has no issuer/jwks_uri to check it",
                kind="bad_metadata",
            )
        return await validate_id_token(
            id_token,
            jwks=self.jwks,
            jwks_uri=endpoints.jwks_uri,
            issuer=endpoints.issuer,
            client_id=provider.client_id,
            nonce=nonce,
            algorithms=provider.oauth2.id_token_signing_algs,
            leeway=leeway,
        )

    # ---- HTTP ----------------------------------------------------------------------------
    async def _send(
        self, provider: Provider, request: RequestSpec, endpoint: str, params: dict[str, str], what: str
    ) -> _Answer:
        """POST ``params`` with the request's extra params, client auth method and body format."""
        body_params = {**request.params, **params}
        auth_method = request.auth_method or provider.oauth2.token_request.auth_method
        if auth_method is None:
            auth_method = "client_secret_basic" if provider.client_secret else "none"
        headers: dict[str, str] = {"Accept": "application/json", **request.headers}
        client = _Client(provider.client_id, provider.client_secret)
        if request.request_content_type == "application/json":
            if auth_method == "client_secret_basic":
                _, headers, _ = ClientAuth(
                    client.client_id, client.client_secret, "client_secret_basic"
                ).prepare("POST", endpoint, headers, "")
            else:
                body_params["client_id"] = provider.client_id
                if auth_method == "client_secret_post" and provider.client_secret:
                    body_params["client_secret"] = provider.client_secret
            headers["Content-Type"] = "application/json"
            data: bytes = json.dumps(body_params).encode()
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            auth = ClientAuth(client.client_id, client.client_secret, auth_method)
            _, headers, body = auth.prepare("POST", endpoint, headers, urlencode(body_params))
            data = body.encode() if isinstance(body, str) else body
        return await self._request(
            "POST",  # token, refresh, revocation and introspection requests are always POST
            endpoint,
            headers=headers,
            data=data,
            what=f"{provider.id} {what}",
            limit=MAX_TOKEN_ANSWER_BYTES,
        )

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None,
        what: str,
        limit: int = MAX_ANSWER_BYTES,
    ) -> _Answer:
        try:
            async with self.session.request(
                method,
                url,
                headers=dict(headers),
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                try:
                    body = await read_body(
                        resp.content, limit, length=resp.content_length, what=f"{what}: the answer"
                    )
                except BodyTooLarge as exc:
                    raise ProviderError(
                        f"{exc} (HTTP {resp.status}, {resp.headers.get('Content-Type', 'no content type')})",
                        kind="bad_response",
                    ) from None
                return _Answer(resp.status, resp.headers.get("Content-Type", ""), body, dict(resp.headers))
        except TimeoutError:
            raise ProviderError(
                f"{what}: no answer within {self.timeout:g}s", kind="timeout", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(
                f"{what}: cannot reach the provider ({type(exc).__name__})", kind="network", retryable=True
            ) from None

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        answer = await self._request("GET", url, headers={"Accept": "application/json"}, data=None, what=what)
        data = _maybe_json(answer)
        raise_for_answer(what, answer.status, data, answer.headers)
        if data is None:
            raise ProviderError(f"{what}: {url} did not answer JSON", kind="bad_response")
        return data


def _maybe_json(answer: _Answer) -> dict[str, Any] | None:
    if not answer.body.strip():
        return None
    try:
        return decode_body(answer.content_type, answer.body)
    except ValueError:
        return None
