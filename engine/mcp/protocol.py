"""JSON-RPC and MCP wire details shared by the server: versions, error codes, message checks, sessions.

Plain dicts on the wire, spelled as in the official ``mcp_types`` models (the ``mcp`` SDK is a test
dependency only, so the engine does not import it).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from typing import Any

# newest first; a client asking for another version is answered with the newest
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST = PROTOCOL_VERSIONS[0]
# what a request without MCP-Protocol-Version is taken to speak (spec: 2025-03-26)
DEFAULT_HEADER_VERSION = "2025-03-26"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # an HTTP-level refusal (origin, API key, Accept, size), as the official SDKs answer
URL_ELICITATION_REQUIRED = -32042

ELICITATION_COMPLETE = "notifications/elicitation/complete"
REPLAY_EVENTS = 32  # events of a session's GET streams kept for a reconnect with Last-Event-ID


class RpcError(Exception):
    """A JSON-RPC error answer (``code``, ``message``, optional ``data``)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class Refused(RpcError):
    """An answer with an HTTP error status and a JSON-RPC error body (``id`` when it is known)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        msg_id: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, data)
        self.status = status
        self.msg_id = msg_id
        self.headers = headers or {}


@dataclasses.dataclass
class Session:
    """One MCP session: what ``initialize`` negotiated and the queue of its server-to-client stream."""

    id: str
    protocol_version: str
    capabilities: dict[str, Any]
    client_info: dict[str, Any]
    queue: asyncio.Queue[dict[str, Any] | None] = dataclasses.field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    streams: int = 0
    # provider id -> why the last URL-mode authorization of this session ended without completing
    auth_failures: dict[str, str] = dataclasses.field(default_factory=dict)
    # GET stream resumption: event ids are "<stream>.<seq>" (seq unique in the session); the last
    # REPLAY_EVENTS events written, with their stream and seq, replayed to that stream on a reconnect
    stream_count: int = 0
    event_seq: int = 0
    sent: collections.deque[tuple[int, int, dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=REPLAY_EVENTS)
    )
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    closed: bool = False

    @property
    def url_elicitation(self) -> bool:
        """True when the client declared ``capabilities.elicitation.url``."""
        elicitation = self.capabilities.get("elicitation")
        return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Queue a notification for the session's GET stream (kept until a stream takes it)."""
        if not self.closed:
            self.queue.put_nowait({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        for _ in range(max(self.streams, 1)):
            self.queue.put_nowait(None)  # ends open GET streams at once


def negotiate(asked: Any) -> str:
    """The client's version when we speak it, else the newest we speak."""
    return asked if isinstance(asked, str) and asked in PROTOCOL_VERSIONS else LATEST


def check_message(message: Any) -> None:
    """Raise ``RpcError(INVALID_REQUEST)`` unless ``message`` is one JSON-RPC 2.0 message."""
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid Request: not a JSON-RPC 2.0 object ("jsonrpc": "2.0")')
    if "id" in message and not valid_id(message["id"]):
        raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string")
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise RpcError(INVALID_REQUEST, "Invalid Request: params must be an object")
    elif "id" not in message or ("result" not in message and "error" not in message):
        raise RpcError(INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response")


def valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def error(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id if valid_id(msg_id) else None, "error": err}


def text_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    """A CallToolResult with one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def sse_event(message: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: message\ndata: {dumps(message)}\n\n".encode()
