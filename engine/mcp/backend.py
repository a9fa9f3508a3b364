"""What the MCP server needs from whoever runs tools: list them, call them, wait for a flow.

The server (engine.mcp.server) knows JSON-RPC, sessions and elicitation; a ``ToolBackend`` knows
tools, users and grants. A call that cannot run until the user authorizes answers
``NeedsAuthorization`` instead of a result; the server turns it into URL-mode elicitation or a
link-in-result answer, depending on what the client declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

FlowOutcome = Literal["completed", "failed", "pending"]


@dataclass(frozen=True)
class NeedsAuthorization:
    """The user must authorize first: ``url`` is the engine's flow link (never a provider URL)."""

    url: str
    flow_id: str
    provider_id: str
    message: str

    def as_result(self) -> dict[str, Any]:
        """The answer for a client that cannot open URLs for us: an ``isError`` result with the link.

        The link is in the text (for the model to show) and in ``structuredContent.authorization_url``.
        """
        text = (
            f"Authorization required: {self.message} Open {self.url} to connect your "
            f"{self.provider_id} account, then call this tool again."
        )
        return {
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"authorization_url": self.url, "provider_id": self.provider_id},
            "isError": True,
        }


class ToolNotFound(LookupError):
    """Raised by ``ToolBackend.call_tool`` for a name it does not serve (JSON-RPC -32602)."""


class ToolBackend(Protocol):
    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        """MCP Tool dicts: ``{name, description, inputSchema, ...}``."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None
    ) -> dict[str, Any] | NeedsAuthorization:
        """An MCP CallToolResult dict (``{content, isError, ...}``) or ``NeedsAuthorization``."""

    async def wait_flow(self, flow_id: str, timeout: float) -> str:  # noqa: ASYNC109 - a long-poll bound
        """Wait up to ``timeout`` seconds: ``"completed"``, ``"failed"`` or ``"pending"``."""
