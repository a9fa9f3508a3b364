"""The MCP authorization server's events (engine.events.McpAuthEvent), gathered while authlib works.

authlib runs in a worker thread (engine.mcp.authserver); what it does is noted with :func:`note`
into the list of the call under way (a context variable: ``asyncio.to_thread`` copies the context,
so the thread appends to the same list), and :class:`EventRecorder` publishes the list on the event
loop when the call returns, where the auditor and the metrics subscribe. Nothing here ever holds a
token, code, verifier or client secret: only client ids, user ids, resources and OAuth error codes.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from engine.events import McpAuthEvent, McpAuthName, Outcome, Publish, discard

GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
MAX_ID = 256

_PENDING: contextvars.ContextVar[list[McpAuthEvent] | None] = contextvars.ContextVar(
    "keyturn_mcp_auth_events", default=None
)


def note(name: McpAuthName, outcome: Outcome, **fields: Any) -> None:
    """Record an event of the authlib call under way (dropped outside one: a programming error)."""
    pending = _PENDING.get()
    if pending is not None:
        pending.append(McpAuthEvent(name=name, outcome=outcome, **fields))


class EventRecorder:
    def __init__(self, publish: Publish = discard) -> None:
        self.publish = publish

    @contextlib.contextmanager
    def gathering(self) -> Iterator[None]:
        """Around one authlib call: what it notes is published when it ends (also when it raised)."""
        pending: list[McpAuthEvent] = []
        token = _PENDING.set(pending)
        try:
            yield
        finally:
            _PENDING.reset(token)
            for event in pending:
                self.publish(event)


def client_of(data: dict[str, Any], headers: dict[str, str]) -> str | None:
    """The client id a token request names (form ``client_id`` or HTTP Basic's user), cut to 256."""
    client = data.get("client_id")
    if not isinstance(client, str) or not client:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, value = auth.partition(" ")
        client = None
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                client = unquote(base64.b64decode(value.strip(), validate=True).decode().partition(":")[0])
    return client[:MAX_ID] if client else None


def grant_type_of(data: dict[str, Any]) -> str:
    value = data.get("grant_type")
    return value if isinstance(value, str) and value in GRANT_TYPES else "other"
