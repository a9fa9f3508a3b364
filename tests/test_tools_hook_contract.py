"""engine.tools.hook_contract: the contract's shapes, and how an AccessHookResult is read."""

from __future__ import annotations

from typing import Any

from engine.tools.hook_contract import access_allows, hook_context, tool_info, toolkits
from engine.tools.registry import Tool


def tool(toolkit: str, name: str, version: str = "1.2.0", **definition: Any) -> Tool:
    return Tool({"name": name, "toolkit": {"name": toolkit, "version": version}, **definition}, None)  # type: ignore[arg-type]


SEND = tool(
    "Gmail",
    "SendEmail",
    requirements={
        "authorization": {"provider_id": "google", "provider_type": "oauth2", "oauth2": {"scopes": ["s1"]}},
        "secrets": [{"key": "SIG"}],
    },
)
LIST = tool("Gmail", "ListEmails")
NOTE = tool("Notes", "Add")


def test_tool_info_and_toolkits_follow_the_contract() -> None:
    """ToolInfo is {name, toolkit, version}; Toolkits maps toolkit -> tools -> [ToolVersionInfo]."""
    assert tool_info(SEND) == {"name": "SendEmail", "toolkit": "Gmail", "version": "1.2.0"}
    assert toolkits([SEND, NOTE]) == {
        "Gmail": {
            "tools": {
                "SendEmail": [
                    {
                        "version": "1.2.0",
                        "requirements": {
                            "authorization": [
                                {
                                    "provider_id": "google",
                                    "provider_type": "oauth2",
                                    "oauth2": {"scopes": ["s1"]},
                                }
                            ],
                            "secrets": [{"name": "SIG"}],
                        },
                    }
                ]
            }
        },
        "Notes": {"tools": {"Add": [{"version": "1.2.0", "requirements": {}}]}},
    }


def test_context_has_scopes_and_user_info_but_no_token() -> None:
    """ToolContext carries the grant's scopes and user info and secret names; nothing else of the grant."""

    from types import SimpleNamespace

    grant = SimpleNamespace(scopes=("a", "b"), user_info={"email": "ann@example.com"}, access_token="at-x")
    context = hook_context("ann", "google", grant, ["SIG"])
    assert context == {
        "user_id": "ann",
        "secrets": ["SIG"],
        "metadata": {},
        "authorization": [
            {
                "provider_id": "google",
                "oauth2": {"scopes": ["a", "b"], "user_info": {"email": "ann@example.com"}},
            }
        ],
    }
    assert hook_context(None, None, None, [])["authorization"] == []


def test_only_wins_over_deny() -> None:
    """With only, just what it names is allowed and deny is ignored; an empty only allows nothing."""
    answer = {"only": {"Gmail": {"tools": {"ListEmails": []}}}, "deny": {"Gmail": {}}}
    assert access_allows(answer, LIST) and not access_allows(answer, SEND) and not access_allows(answer, NOTE)
    assert not access_allows({"only": {}}, LIST)


def test_deny_by_toolkit_tool_and_version() -> None:
    """deny hides a whole toolkit, one tool (any version), or one version only; names ignore case."""
    assert not access_allows({"deny": {"gmail": {}}}, LIST) and access_allows({"deny": {"gmail": {}}}, NOTE)
    assert not access_allows({"deny": {"Gmail": {"tools": {"sendemail": []}}}}, SEND)
    assert access_allows({"deny": {"Gmail": {"tools": {"SendEmail": []}}}}, LIST)
    assert not access_allows({"deny": {"Gmail": {"tools": {"SendEmail": [{"version": "1.2.0"}]}}}}, SEND)
    assert access_allows({"deny": {"Gmail": {"tools": {"SendEmail": [{"version": "9.9.9"}]}}}}, SEND)
    assert access_allows({}, SEND) and access_allows({"deny": None}, SEND)
