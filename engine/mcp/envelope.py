"""The 2026-07-28 request envelope: per-request ``_meta``, the mirrored headers, the spec's error codes.

Spelled as in the revision's text (basic/index, basic/versioning, basic/transports/streamable-http)
and in ``mcp_types`` (whose per-version surface validates the params). A request is *modern* when
it carries ``MCP-Protocol-Version: 2026-07-28``, is ``server/discover``, or, without a session,
names its version in ``_meta``; everything else is the handshake era (engine.mcp.server).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any

import mcp_types
from mcp_types import methods as mcp_methods
from pydantic import ValidationError

from engine.mcp import protocol as p

MODERN_VERSIONS = ("2026-07-28",)
LATEST_MODERN = MODERN_VERSIONS[0]
# every revision /mcp serves, newest first: what UnsupportedProtocolVersion and server/discover name.
# (The text's example lists both eras; the SDK's own server lists only modern ones - the text wins.)
SUPPORTED_VERSIONS = (*MODERN_VERSIONS, *p.PROTOCOL_VERSIONS)

META_PROTOCOL_VERSION = mcp_types.PROTOCOL_VERSION_META_KEY  # io.modelcontextprotocol/protocolVersion
META_CLIENT_CAPABILITIES = mcp_types.CLIENT_CAPABILITIES_META_KEY
META_CLIENT_INFO = mcp_types.CLIENT_INFO_META_KEY
META_SERVER_INFO = mcp_types.SERVER_INFO_META_KEY  # io.modelcontextprotocol/serverInfo, on every result
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"

HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

# HTTP status of a modern JSON-RPC error (streamable-http "Request Metadata", "Server Validation")
HTTP_STATUS = {
    p.PARSE_ERROR: 400,
    p.INVALID_REQUEST: 400,
    p.INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    p.METHOD_NOT_FOUND: 404,
}

VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"
NAME_HEADER = "Mcp-Name"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


@dataclasses.dataclass(frozen=True)
class Envelope:
    """What one modern request says about its client (nothing is kept between requests)."""

    version: str
    capabilities: dict[str, Any]
    client_info: dict[str, Any] | None

    @property
    def url_elicitation(self) -> bool:
        """True when the request's client capabilities declare ``elicitation.url``."""
        elicitation = self.capabilities.get("elicitation")
        return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


def is_modern(headers: Any, message: dict[str, Any]) -> bool:
    """Which era answers this POST: modern (2026-07-28) or the handshake era."""
    method = message.get("method")
    if method == "initialize":
        return False
    if headers.get(VERSION_HEADER) in MODERN_VERSIONS or method == "server/discover":
        return True
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta and not headers.get("Mcp-Session-Id")


def unsupported(requested: Any) -> p.RpcError:
    return p.RpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": str(requested)[:64]},
    )


def decode_header_value(value: str | None) -> str | None:
    """A mirrored header's value, with the ``=?base64?...?=`` sentinel decoded (None when malformed)."""
    if value is None:
        return None
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    try:
        raw = base64.b64decode(match["payload"], validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def read_envelope(headers: Any, message: dict[str, Any]) -> Envelope:
    """The ladder of streamable-http "Server Validation": raise the first failing rung's ``RpcError``.

    ``_meta`` with the version and capabilities (-32602), the mirrored headers (-32020), a served
    version (-32022). ``server/discover`` from a client that sent neither header nor ``_meta`` (a
    handshake-era client probing) is answered all the same.
    """
    method = message["method"]
    for name in (VERSION_HEADER, METHOD_HEADER, NAME_HEADER):
        if len(headers.getall(name, ())) > 1:
            raise p.RpcError(HEADER_MISMATCH, f"Header mismatch: {name} appears more than once")
    params = message.get("params") or {}
    meta = params.get("_meta")
    if method == "server/discover" and meta is None and VERSION_HEADER not in headers:
        return Envelope(LATEST_MODERN, {}, None)
    if not isinstance(meta, dict):
        raise p.RpcError(
            p.INVALID_PARAMS,
            f"Invalid params: params._meta must carry {META_PROTOCOL_VERSION!r} "
            f"and {META_CLIENT_CAPABILITIES!r}",
        )
    missing = [k for k in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if k not in meta]
    if missing:
        raise p.RpcError(p.INVALID_PARAMS, f"Invalid params: params._meta lacks {', '.join(missing)}")
    version = meta[META_PROTOCOL_VERSION]
    if headers.get(VERSION_HEADER) != version:
        raise p.RpcError(
            HEADER_MISMATCH,
            f"Header mismatch: {VERSION_HEADER} does not match params._meta's protocol version",
        )
    if headers.get(METHOD_HEADER) != method:
        raise p.RpcError(
            HEADER_MISMATCH, f"Header mismatch: {METHOD_HEADER} does not match the body's method"
        )
    name_key = NAME_PARAM.get(method)
    body_name = params.get(name_key) if name_key is not None else None
    if body_name is not None and decode_header_value(headers.get(NAME_HEADER)) != body_name:
        msg = f"Header mismatch: {NAME_HEADER} does not match the body's {name_key}"
        raise p.RpcError(HEADER_MISMATCH, msg)
    if not isinstance(version, str):
        raise p.RpcError(p.INVALID_PARAMS, "Invalid params: the protocol version must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported(version)
    caps, info = meta[META_CLIENT_CAPABILITIES], meta.get(META_CLIENT_INFO)
    if not isinstance(caps, dict):
        raise p.RpcError(p.INVALID_PARAMS, f"Invalid params: {META_CLIENT_CAPABILITIES} must be an object")
    return Envelope(version, caps, info if isinstance(info, dict) else None)


def validate_params(method: str, version: str, params: dict[str, Any]) -> None:
    """Check ``params`` against the revision's request model (``mcp_types``): -32602 naming the field."""
    try:
        mcp_methods.validate_client_request(method, version, params)
    except KeyError:
        raise p.RpcError(p.METHOD_NOT_FOUND, f"Method not found: {method[:64]}") from None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("params",))
        msg = f"Invalid params: {where or 'params'}: {first.get('msg')}"
        raise p.RpcError(p.INVALID_PARAMS, msg) from None
