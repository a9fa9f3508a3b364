"""Who is calling, and which tools they may see: API keys limited to tool globs (SECURITY 42).

A ``Caller`` is what the API key check leaves on a request: the key's name (never the key) and its
tool globs (``None``: every tool). Globs match ``Toolkit.Tool`` names case-insensitively
(``Gmail.*``, ``*.Delete*``). A tool a caller may not use is invisible to it: it is left out of
every list and a call to it answers exactly as an unknown tool does.

The API key middleware sets the request's caller in :data:`CURRENT_CALLER` too, so code reached
from a request handler (the MCP server's backend) finds it without threading it through each layer.
"""

from __future__ import annotations

import contextvars
import dataclasses
import fnmatch
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Caller:
    name: str  # "security.api_keys[2]" or the stored key's name: for audit lines and approval pages
    tools: tuple[str, ...] | None = None  # globs over Toolkit.Tool; None: every tool

    def allows(self, tool_name: str) -> bool:
        return tools_allow(self.tools, tool_name)


def tools_allow(globs: Iterable[str] | None, tool_name: str) -> bool:
    """Whether ``tool_name`` (``Toolkit.Tool``) matches one of ``globs`` (``None`` matches everything)."""
    if globs is None:
        return True
    name = tool_name.lower()
    return any(glob and fnmatch.fnmatchcase(name, glob.strip().lower()) for glob in globs)


def caller_allows(caller: object, tool_name: str) -> bool:
    """``caller.allows(tool_name)`` for a ``Caller``; any other identity (or none) limits nothing."""
    return not isinstance(caller, Caller) or caller.allows(tool_name)


CURRENT_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("keyturn_caller", default=None)


def current_caller() -> Caller | None:
    return CURRENT_CALLER.get()
