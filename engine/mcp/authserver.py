"""Keyturn's authorization server for MCP clients, built from authlib's parts (SECURITY.md 35-37).

authlib's ``AuthorizationServer`` with the authorization code grant (RFC 6749) and PKCE S256 only
(RFC 7636, required for every client), refresh tokens rotated on every use, RFC 7591 registration,
RFC 7009 revocation and the RFC 9207 ``iss`` answer parameter. authlib is synchronous; each
request runs in a worker thread (:meth:`McpAuthServer.call`), and the few storage queries it asks
for (``query_client``, codes, tokens) run on the event loop and are waited for from that thread.

Clients are found, in order: listed in ``mcp.oauth.clients``; an https ``client_id`` (a Client ID
Metadata Document, :mod:`engine.mcp.cimd`); registered here (RFC 7591). Every code and token is
bound to its client, user and resource (RFC 8707: this engine's ``/mcp`` URL or a gateway's).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from authlib.oauth2 import rfc7009, rfc7591, rfc7636
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidRequestError,
    JsonRequest,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from engine.config.model import Config
from engine.events import Publish, discard
from engine.mcp.authevents import EventRecorder, client_of, grant_type_of, note
from engine.mcp.authmodels import (
    AUTH_METHODS,
    CODE_TTL,
    SCOPE,
    SCOPES,
    Client,
    Code,
    Incoming,
    InvalidClientMetadataDocument,
    InvalidTargetError,
    Issuer,
    JsonRequestData,
    Outgoing,
    Token,
    WireRequest,
)
from engine.mcp.cimd import ClientMetadataError, ClientMetadataFetcher, is_metadata_url
from engine.store.base import now_utc
from engine.store.mcp_oauth import CodeRecord, digest

T = TypeVar("T")


class S256Only(rfc7636.CodeChallenge):  # type: ignore[misc]
    """PKCE required of every client, S256 only: no challenge, or any other method, is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - authlib's own class attribute
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: McpAuthServer

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        resource = self.request.payload.data.get("resource")
        if len(self.request.payload.datalist.get("resource", [])) > 1:
            raise InvalidTargetError("one resource per authorization", redirect_uri=redirect_uri)
        if not resource:  # MCP clients MUST send it (MCP authorization, every revision since 2025-06-18)
            raise InvalidTargetError(
                "resource is required (RFC 8707): the URL of the MCP endpoint the token is for",
                redirect_uri=redirect_uri,
            )
        if resource not in self.server.resources():
            raise InvalidTargetError(
                "resource is not an MCP endpoint of this server", redirect_uri=redirect_uri
            )
        self.request.resource = resource
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        record = CodeRecord(
            client_id=request.client.client_id,
            user_id=str(request.user),
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri() or "",
            resource=request.resource,
            scope=request.scope,
            code_challenge=request.payload.data["code_challenge"],
            expires_at=now_utc() + timedelta(seconds=CODE_TTL),
        )
        self.server.run(self.server.store().save_code(code, record))

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        reused: list[tuple[str, str]] = []
        record = self.server.run(
            self.server.store().take_code(code, client.client_id, on_reuse=lambda *r: reused.append(r))
        )
        for family, user in reused:
            note("mcp_oauth.reuse_detected", "denied", client_id=client.client_id, user_id=user,
                 reason="code", family_id=family)  # fmt: skip
        if record is None:
            return None
        resource = self.request.form.get("resource")
        if resource and resource != record.resource:
            raise InvalidTargetError("resource differs from the authorization's")
        return Code(record)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing: :meth:`query_authorization_code` took it."""

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.record.user_id


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: McpAuthServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        client_id = self.request.client.client_id
        reused: list[tuple[str, str]] = []
        record = self.server.run(
            self.server.store().take_refresh(refresh_token, client_id, on_reuse=lambda *r: reused.append(r))
        )
        for family, user in reused:
            note("mcp_oauth.reuse_detected", "denied", client_id=client_id, user_id=user,
                 reason="refresh_token", family_id=family)  # fmt: skip
        if record is None:
            return None
        resource = self.request.form.get("resource")
        if resource and resource != record.resource:
            raise InvalidTargetError("resource differs from the token's")
        return Token(record)

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.record.user_id

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing: :meth:`authenticate_refresh_token` marked it used (a reuse revokes its family)."""


class Revocation(rfc7009.RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: McpAuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        record = self.server.run(self.server.store().find(token_string))
        return Token(record) if record is not None else None

    def revoke_token(self, token: Token, request: Any) -> None:
        repo = self.server.store()
        record = token.record
        if record.kind == "refresh":  # the refresh token and every token of its family
            self.server.run(repo.revoke_family(record.family_id))
        else:
            self.server.run(repo.revoke(record.id))
        family = record.family_id if record.kind == "refresh" else None
        note("mcp_oauth.token_revoked", "success", client_id=record.client_id, user_id=record.user_id,
             reason=f"{record.kind}_token", family_id=family)  # fmt: skip


class Registration(rfc7591.ClientRegistrationEndpoint):  # type: ignore[misc]
    server: McpAuthServer

    def authenticate_token(self, request: Any) -> bool:
        return self.server.config().mcp.oauth.registration == "open"  # anyone: sign-in and consent follow

    def get_server_metadata(self) -> dict[str, Any]:
        return self.server.metadata()

    def generate_client_id(self, request: Any) -> str:
        return f"mcpc_{secrets.token_urlsafe(18)}"

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        if (request.payload.data.get("token_endpoint_auth_method") or "client_secret_basic") == "none":
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> Client:
        from engine.config.mcp import redirect_uri_ok

        uris = client_metadata.get("redirect_uris") or []
        if not uris or not all(isinstance(u, str) and redirect_uri_ok(u) for u in uris):
            raise rfc7591.InvalidRedirectURIError("redirect_uris must be https (or loopback http) URLs")
        grant_types = client_metadata.get("grant_types") or ["authorization_code"]
        if not set(grant_types) <= {"authorization_code", "refresh_token"}:
            raise rfc7591.InvalidClientMetadataError("grant_types: authorization_code and refresh_token only")
        method = client_metadata.get("token_endpoint_auth_method") or "client_secret_basic"
        if method not in AUTH_METHODS:
            raise rfc7591.InvalidClientMetadataError(
                f"token_endpoint_auth_method: one of {', '.join(AUTH_METHODS)}"
            )
        metadata = {
            "client_id": client_info["client_id"],
            "redirect_uris": uris,
            "client_name": str(client_metadata.get("client_name") or "")[:200] or None,
            "grant_types": grant_types,
            "token_endpoint_auth_method": method,
        }
        secret = client_info.get("client_secret")
        self.server.run(self.server.store().add_client(client_info["client_id"], secret, metadata))
        note("mcp_oauth.client_registered", "success", client_id=client_info["client_id"])
        return Client(metadata, secret_hash=digest(secret) if secret else None, kind="registered")


class McpAuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        store: Callable[[], Any],
        config: Callable[[], Config],
        public_url: Callable[[], str],
        fetcher: ClientMetadataFetcher,
        publish: Publish = discard,
    ) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.events = EventRecorder(publish)
        self.store = store
        self.config = config
        self.public_url = public_url
        self.fetcher = fetcher
        self.loop: asyncio.AbstractEventLoop | None = None
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **kw: f"mcpat_{secrets.token_urlsafe(32)}",
                lambda **kw: f"mcprt_{secrets.token_urlsafe(32)}",
                lambda client, grant_type: int(float(self.config().mcp.oauth.access_token_ttl)),
            ),
        )
        self.register_grant(CodeGrant, [S256Only(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Registration)
        issuer = Issuer(public_url)
        self.register_extension(issuer)
        self.issuer = issuer

    # ---- the bridge between authlib's thread and the event loop ------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run an authlib entry point in a worker thread; publish the events it noted afterwards."""
        self.loop = asyncio.get_running_loop()
        with self.events.gathering():
            return await asyncio.to_thread(fn, *args, **kw)

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    # ---- what authlib asks of a server -------------------------------------------------------------
    def main_resource(self) -> str:
        return f"{self.public_url()}/mcp"

    def resources(self) -> set[str]:
        config = self.config()
        out = {self.main_resource()} if config.mcp.auth == "oauth" else set()
        for g in config.mcp.gateways:
            if (g.auth or config.mcp.auth) == "oauth":
                out.add(f"{self.public_url()}/mcp/{g.slug}")
        return out

    def query_client(self, client_id: str) -> Client | None:
        return self.run(self.find_client(client_id))

    async def find_client(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 2048:
            return None
        oauth = self.config().mcp.oauth
        for listed in oauth.clients:
            if listed.client_id == client_id:
                metadata = {
                    "client_id": listed.client_id,
                    "redirect_uris": list(listed.redirect_uris),
                    "client_name": listed.client_name,
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "client_secret_basic" if listed.client_secret else "none",
                }
                secret = digest(listed.client_secret) if listed.client_secret else None
                return Client(metadata, secret_hash=secret, kind="config")
        if is_metadata_url(client_id):
            if not oauth.client_metadata.enabled:
                return None
            try:
                document = await self.fetcher.fetch(client_id)
            except ClientMetadataError as exc:
                raise InvalidClientMetadataDocument(str(exc)) from None
            return Client(document, kind="metadata_document")
        found = await self.store().client(client_id)
        if found is None:
            return None
        return Client(found[1], secret_hash=found[0], kind="registered")

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        oauth = self.config().mcp.oauth
        repo = self.store()
        if request.payload.grant_type == "authorization_code":
            code: Code = request.authorization_code
            family, resource = None, code.record.resource
        else:
            old: Token = request.refresh_token
            family, resource = old.record.family_id, old.record.resource
        issued = self.run(
            repo.issue(
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                family_id=family,
                client_id=request.client.client_id,
                user_id=str(request.user),
                resource=resource,
                scope=token.get("scope") or SCOPE,
                access_ttl=float(oauth.access_token_ttl),
                refresh_ttl=float(oauth.refresh_token_ttl),
            )
        )
        if family is None:
            self.run(repo.code_exchanged(request.form["code"], issued))
        note("mcp_oauth.token_issued", "success", client_id=request.client.client_id,
             user_id=str(request.user), grant_type=request.payload.grant_type, resource=resource)  # fmt: skip

    def create_token_response(self, request: Incoming | None = None) -> Outgoing:
        """authlib's token endpoint; a refusal is noted with its OAuth error code (never the request)."""
        out: Outgoing = super().create_token_response(request)
        status, body, _ = out
        if status >= 400 and request is not None:
            error = body.get("error") if isinstance(body, dict) else None
            note("mcp_oauth.token_refused", "denied", client_id=client_of(request.data, request.headers),
                 grant_type=grant_type_of(request.data), reason=str(error or "invalid_request"))  # fmt: skip
        return out

    def create_oauth2_request(self, request: Incoming | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        out = WireRequest(request)
        return out

    def create_json_request(self, request: Incoming) -> JsonRequest:
        out = JsonRequest(request.method, request.uri, request.headers)
        out.payload = JsonRequestData(request.data)
        return out

    def handle_response(self, status: int, body: Any, headers: Any) -> Outgoing:
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

        base = self.public_url()
        oauth = self.config().mcp.oauth
        data: dict[str, Any] = {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "token_endpoint": f"{base}/oauth2/token",
            "revocation_endpoint": f"{base}/oauth2/revoke",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": oauth.client_metadata.enabled,
        }
        if oauth.registration == "open":
            data["registration_endpoint"] = f"{base}/oauth2/register"
        return dict(AuthorizationServerMetadata(data))
