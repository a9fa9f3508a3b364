"""The JSON shapes of Arcade's hook contract (ArcadeAI/schemas ``logic_extensions/http/1.0``).

``ToolInfo``, ``ToolContext`` (never a token: scopes and user info of the grant, secret names only),
the ``Toolkits`` map an access hook is asked about, and how an ``AccessHookResult`` is read: with
``only``, just what it names is allowed (``deny`` is ignored); otherwise ``deny`` hides what it names.
A toolkit named without ``tools`` means the whole toolkit, a tool without versions every version;
names compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.tools.registry import Tool


def tool_info(tool: Tool) -> dict[str, Any]:
    """The contract's ``ToolInfo``."""
    d = tool.definition
    info: dict[str, Any] = {
        "name": d["name"],
        "toolkit": d["toolkit"]["name"],
        "version": str(d["toolkit"].get("version") or ""),
    }
    if isinstance(d.get("metadata"), dict):
        info["metadata"] = d["metadata"]
    return info


def hook_context(
    user_id: str | None, provider_id: str | None, grant: Any, secret_keys: Iterable[str]
) -> dict[str, Any]:
    """The contract's ``ToolContext``: scopes and user info of the grant, secret names; never a token."""
    context: dict[str, Any] = {"user_id": user_id or "", "secrets": list(secret_keys), "metadata": {}}
    context["authorization"] = (
        [
            {
                "provider_id": provider_id,
                "oauth2": {"scopes": list(grant.scopes), "user_info": dict(grant.user_info or {})},
            }
        ]
        if grant is not None and provider_id
        else []
    )
    return context


def _requirements(definition: Mapping[str, Any]) -> dict[str, Any]:
    req = definition.get("requirements") or {}
    out: dict[str, Any] = {}
    auth = req.get("authorization")
    if isinstance(auth, dict):
        entry: dict[str, Any] = {
            "provider_id": auth.get("provider_id") or auth.get("id"),
            "provider_type": auth.get("provider_type") or "oauth2",
        }
        scopes = (auth.get("oauth2") or {}).get("scopes")
        if scopes:
            entry["oauth2"] = {"scopes": list(scopes)}
        out["authorization"] = [entry]
    secrets = [{"name": s["key"]} for s in req.get("secrets") or [] if isinstance(s, dict) and "key" in s]
    if secrets:
        out["secrets"] = secrets
    return out


def toolkits(tools: list[Tool]) -> dict[str, Any]:
    """The contract's ``Toolkits``: toolkit -> {tools: {name: [ToolVersionInfo]}}."""
    out: dict[str, Any] = {}
    for tool in tools:
        d = tool.definition
        info: dict[str, Any] = {
            "version": str(d["toolkit"].get("version") or ""),
            "requirements": _requirements(d),
        }
        if isinstance(d.get("metadata"), dict):
            info["metadata"] = d["metadata"]
        toolkit = out.setdefault(d["toolkit"]["name"], {"tools": {}})
        toolkit["tools"].setdefault(d["name"], []).append(info)
    return out


def _named(toolkits: Any, tool: Tool) -> bool:
    """Whether the ``Toolkits`` map names ``tool`` (case-insensitively; see the module docstring)."""
    if toolkits is None:
        return False
    if not isinstance(toolkits, dict):
        raise ValueError("answered only/deny that is not a toolkits map")
    d = tool.definition
    want_kit, want_tool = d["toolkit"]["name"].lower(), d["name"].lower()
    version = str(d["toolkit"].get("version") or "")
    for kit_name, kit in toolkits.items():
        if str(kit_name).lower() != want_kit:
            continue
        listed = (kit or {}).get("tools") if isinstance(kit, dict) else None
        if not listed:
            return True  # the whole toolkit
        if not isinstance(listed, dict):
            raise ValueError("answered a toolkit whose tools are not a map")
        for tool_name, versions in listed.items():
            if str(tool_name).lower() != want_tool:
                continue
            if not versions:
                return True
            if isinstance(versions, list) and any(
                isinstance(v, dict) and str(v.get("version") or "") in ("", version) for v in versions
            ):
                return True
    return False


def access_allows(answer: Mapping[str, Any], tool: Tool) -> bool:
    if answer.get("only") is not None:
        return _named(answer["only"], tool)
    return not _named(answer.get("deny"), tool)
