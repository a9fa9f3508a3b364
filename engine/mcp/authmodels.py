"""The parts of the MCP authorization server that authlib asks for: clients, codes, tokens, requests.

authlib's grants call methods on these (``check_redirect_uri``, ``get_scope``, ...); they hold what
the store and the client metadata say, nothing more. :class:`Incoming` is an HTTP request read on
the event loop, so that authlib (in a worker thread) never touches aiohttp.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from typing import Any

from authlib.oauth2 import rfc9207
from authlib.oauth2.rfc6749 import ClientMixin, JsonPayload, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

from engine.store.mcp_oauth import CodeRecord, TokenRecord, digest

SCOPE = "mcp:tools"
SCOPES = (SCOPE,)
CODE_TTL = 60.0
AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    error = "invalid_target"  # RFC 8707


@dataclasses.dataclass
class Incoming:
    """What authlib needs of an HTTP request, read on the event loop beforehand."""

    method: str
    uri: str
    headers: dict[str, str]
    data: dict[str, Any]
    lists: dict[str, list[Any]] = dataclasses.field(default_factory=dict)  # every value of a repeated key


Outgoing = tuple[int, Any, list[tuple[str, str]]]


class Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, metadata: dict[str, Any], *, secret_hash: str | None = None, kind: str) -> None:
        self.client_id: str = metadata["client_id"]
        self.metadata = metadata
        self.secret_hash = secret_hash
        self.kind = kind  # config | metadata_document | registered
        self.redirect_uris: list[str] = list(metadata.get("redirect_uris") or [])
        self.grant_types: list[str] = list(metadata.get("grant_types") or ["authorization_code"])
        self.auth_method: str = metadata.get("token_endpoint_auth_method") or "none"

    @property
    def name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        asked = (scope or "").split()
        return " ".join(s for s in asked if s in SCOPES) or SCOPE

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and hmac.compare_digest(digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class Code:
    def __init__(self, record: CodeRecord) -> None:
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = "S256"

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope


class Token:
    def __init__(self, record: TokenRecord) -> None:
        self.record = record

    def get_scope(self) -> str:
        return self.record.scope

    def check_client(self, client: Client) -> bool:
        return self.record.client_id == client.client_id


class InvalidClientMetadataDocument(OAuth2Error):  # type: ignore[misc]
    error = "invalid_client"
    status_code = 400


class WireRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, incoming: Incoming) -> None:
        super().__init__(incoming.method, incoming.uri, headers=incoming.headers)
        self.payload = BasicOAuth2Payload(incoming.data)
        if incoming.lists:
            self.payload._datalist = incoming.lists
        self._form = incoming.data
        self.resource: str | None = None

    @property
    def args(self) -> dict[str, Any]:
        return self._form

    @property
    def form(self) -> dict[str, Any]:
        return self._form


class JsonRequestData(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class Issuer(rfc9207.IssuerParameter):  # type: ignore[misc]
    """RFC 9207: ``iss`` on every authorization answer."""

    def __init__(self, public_url: Callable[[], str]) -> None:
        self.public_url = public_url

    def get_issuer(self) -> str:
        return self.public_url()

    def add_issuer_parameter(self, authorization_server: Any, response: Any) -> None:
        """``response`` is our (status, body, headers) tuple: add ``iss`` to its Location."""
        from authlib.common.urls import add_params_to_uri

        headers = response[2]
        for i, (name, value) in enumerate(headers):
            if name.lower() == "location":
                headers[i] = (name, add_params_to_uri(value, {"iss": self.get_issuer()}))
