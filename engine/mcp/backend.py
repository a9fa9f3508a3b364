"""What the MCP server needs from whoever runs tools: list them, call them, wait for a flow.

The server (engine.mcp.server) knows JSON-RPC, sessions and elicitation; a ``ToolBackend`` knows
tools, users and grants. A call that cannot run until the user authorizes answers
``NeedsAuthorization`` instead of a result; the server turns it into URL-mode elicitation or a
link-in-result answer, depending on what the client declared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol

FlowOutcome = Literal["completed", "failed", "pending"]


@dataclass(frozen=True)
class NeedsAuthorization:
    """The user must authorize first: ``url`` is the engine's flow link (never a provider URL).

    ``kind`` ``approval``: the call waits for its user's approval (``tools.approval``); ``url`` is the
    approval page and ``flow_id`` the approval's id, waited for like a flow.
    """

    url: str
    flow_id: str
    provider_id: str
    message: str
    kind: Literal["authorization", "approval"] = "authorization"

    def as_result(self) -> dict[str, Any]:
        """The answer for a client that cannot open URLs for us: an ``isError`` result with the link.

        The link is in the text (for the model to show) and in ``structuredContent.authorization_url``.
        """
        if self.kind == "approval":
            text = (
                f"Approval required: {self.message} Open {self.url} to approve or deny it, "
                "then call this tool again with the same arguments."
            )
            structured = {"approval_url": self.url, "approval_id": self.flow_id}
        else:
            text = (
                f"Authorization required: {self.message} Open {self.url} to connect your "
                f"{self.provider_id} account, then call this tool again."
            )
            structured = {"authorization_url": self.url, "provider_id": self.provider_id}
        return {"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": True}

    def after_failure(self, why: str) -> dict[str, Any]:
        """The retry after a URL-mode authorization that did not complete: ``as_result`` saying ``why``.

        The link is the new flow's; ``structuredContent.previous_authorization`` repeats ``why``.
        """
        message = f"The previous authorization for {self.provider_id} did not complete: {why}."
        result = dataclasses.replace(self, message=message).as_result()
        result["structuredContent"]["previous_authorization"] = why
        return result


@dataclass(frozen=True)
class Relay:
    """What a 2026-07-28 client's call carries on to an upstream MCP server (engine.mcp.bridge)."""

    capabilities: dict[str, Any]  # the client's, so an upstream asks only for input the client can give
    input_responses: dict[str, Any] | None = None
    request_state: str | None = None  # the upstream's own requestState, untouched


@dataclass(frozen=True)
class UpstreamInput:
    """An upstream MCP server answered ``input_required``: passed through to the client."""

    input_requests: dict[str, Any] | None
    request_state: str | None


class ToolNotFound(LookupError):
    """Raised by ``ToolBackend.call_tool`` for a name it does not serve (JSON-RPC -32602)."""


class ToolBackend(Protocol):
    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        """MCP Tool dicts: ``{name, description, inputSchema, ...}``."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None, relay: Relay | None = None
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput:
        """An MCP CallToolResult dict (``{content, isError, ...}``) or ``NeedsAuthorization``.

        ``relay`` is given (as a keyword) only for 2026-07-28 clients; only a bridged tool answers
        ``UpstreamInput``, and only when given one.
        """

    async def wait_flow(self, flow_id: str, timeout: float) -> str:  # noqa: ASYNC109 - a long-poll bound
        """Wait up to ``timeout`` seconds: ``"completed"``, ``"failed"`` or ``"pending"``."""
