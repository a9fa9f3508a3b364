"""engine.tools.hooks: Arcade's hook contract against real hook servers on loopback, over REST and MCP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from engine.metrics.registry import METRICS
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config

SEND = {"recipient": "bob@example.com", "subject": "hi", "body": "hello"}
HOOK_TOKEN = "hook-bearer-0123456789"


def hooks_yaml(*hooks: str) -> str:
    return "tools:\n  hooks:\n" + "".join(f"    - {h}\n" for h in hooks)


async def execute(engine: Any, tool: str, inputs: dict[str, Any], user: str = "ann@example.com") -> Any:
    status, body = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": tool, "input": inputs, "user_id": user}
    )
    assert status == 200, body
    return body


async def mail_engine(keyturn_engine: Any, toolkit_worker: Any, *hooks: str) -> tuple[Any, Any]:
    worker = await toolkit_worker(mail=True)
    engine = await keyturn_engine(worker.yaml() + hooks_yaml(*hooks))
    return engine, worker


async def test_pre_hook_denies_with_the_message_the_agent_sees(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """CHECK_FAILED refuses the call with error_message (REST and MCP); other tools are not governed."""

    def answer(name: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["inputs"]["recipient"].endswith("@example.com"):
            return {"code": "OK"}
        return {"code": "CHECK_FAILED", "error_message": "mail may only go to example.com addresses"}

    hooks = await hook_server(answer)
    engine, worker = await mail_engine(
        keyturn_engine,
        toolkit_worker,
        f"{{id: domain, kind: pre, url: '{hooks.url('pre')}', token: {HOOK_TOKEN}, tools: ['Gmail.Send*']}}",
    )
    out = await execute(engine, "Gmail.SendEmail", {**SEND, "recipient": "eve@evil.test"})
    assert out["success"] is False
    assert out["output"]["error"]["message"] == "mail may only go to example.com addresses"
    assert out["output"]["error"]["can_retry"] is False
    assert (await execute(engine, "Gmail.SendEmail", SEND))["success"] is True
    assert (await execute(engine, "Notes.Add", {"text": "x"}))["success"] is True
    assert hooks.calls("pre") == 2 and await worker.runs() == {"Gmail.SendEmail": 1, "Notes.Add": 1}
    sent = hooks.received["pre"][0]
    assert sent["tool"] == {"name": "SendEmail", "toolkit": "Gmail", "version": sent["tool"]["version"]}
    assert sent["execution_id"].startswith("ex_") and sent["context"]["user_id"] == "ann@example.com"
    assert hooks.headers["pre"][0]["Authorization"] == f"Bearer {HOOK_TOKEN}"

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": "ann@example.com"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        result = await session.call_tool("Gmail_SendEmail", {**SEND, "recipient": "eve@evil.test"})
        assert result.is_error and "mail may only go to example.com addresses" in result.content[0].text
    assert await worker.runs() == {"Gmail.SendEmail": 1, "Notes.Add": 1}
    metrics = engine.app[METRICS]
    labels = {"hook": "domain", "kind": "pre", "outcome": "check_failed"}
    assert metrics.registry.get_sample_value("keyturn_hook_calls_total", labels) == 2
    assert metrics.registry.get_sample_value("keyturn_hook_duration_seconds_count", {"hook": "domain"}) == 3


async def test_pre_hooks_rewrite_inputs_in_priority_order_and_an_invalid_rewrite_is_refused(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """override.inputs replaces what it names (lower priority first); a rewrite the schema refuses fails."""

    def answer(name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name == "tag":
            return {"code": "OK", "override": {"inputs": {"subject": "[ext] " + body["inputs"]["subject"]}}}
        if body["inputs"]["body"] == "break it":
            return {"code": "OK", "override": {"inputs": {"subject": 5}}}
        return {"code": "OK", "override": {"inputs": {"body": body["inputs"]["subject"] + " / " + "signed"}}}

    hooks = await hook_server(answer)
    engine, worker = await mail_engine(
        keyturn_engine,
        toolkit_worker,
        f"{{id: sign, kind: pre, url: '{hooks.url('sign')}', priority: 20}}",
        f"{{id: tag, kind: pre, url: '{hooks.url('tag')}', priority: 10}}",
    )
    out = await execute(engine, "Gmail.SendEmail", SEND)
    assert out["success"] is True
    assert out["output"]["value"] == {
        "sent_to": "bob@example.com",
        "subject": "[ext] hi",
        "body": "[ext] hi / signed",
    }
    assert hooks.received["sign"][0]["inputs"]["subject"] == "[ext] hi"  # it saw the first hook's rewrite

    out = await execute(engine, "Gmail.SendEmail", {**SEND, "body": "break it"})
    assert out["success"] is False and "input.subject" in out["output"]["error"]["message"]
    assert "pre hook rewrote the inputs" in out["output"]["error"]["message"]
    assert await worker.runs() == {"Gmail.SendEmail": 1}


async def test_pre_hook_secrets_reach_the_worker(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """override.secrets supplies a secret tools.secrets lacks; the hook itself saw only secret names."""
    hooks = await hook_server(
        lambda name, body: {"code": "OK", "override": {"secrets": [{"SIGNATURE": "Ann"}]}}
    )
    engine, _ = await mail_engine(
        keyturn_engine, toolkit_worker, f"{{id: s, kind: pre, url: '{hooks.url('s')}'}}"
    )
    out = await execute(engine, "Notes.Sign", {"text": "ok"})
    assert out["success"] is True and out["output"]["value"] == "ok -- Ann"
    assert hooks.received["s"][0]["context"]["secrets"] == ["SIGNATURE"]


async def test_post_hook_redacts_output(keyturn_engine: Any, toolkit_worker: Any, hook_server: Any) -> None:
    """override.output replaces the value the agent gets; CHECK_FAILED withholds it with the message."""

    def answer(name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name == "withhold":
            return {"code": "CHECK_FAILED", "error_message": "deleting is audited; output withheld"}
        text = json.dumps(body["output"]).replace("123-45-6789", "[redacted]")
        return {"code": "OK", "override": {"output": json.loads(text)}}

    hooks = await hook_server(answer)
    engine, worker = await mail_engine(
        keyturn_engine,
        toolkit_worker,
        f"{{id: pii, kind: post, url: '{hooks.url('pii')}', tools: ['Gmail.List*']}}",
        f"{{id: withhold, kind: post, url: '{hooks.url('withhold')}', tools: ['Gmail.Delete*']}}",
    )
    out = await execute(engine, "Gmail.ListEmails", {"n_emails": 2})
    assert out["success"] is True and "123-45-6789" not in json.dumps(out)
    assert out["output"]["value"]["emails"][0]["snippet"] == "my SSN is [redacted]"
    sent = hooks.received["pii"][0]
    assert sent["success"] is True and sent["inputs"] == {"n_emails": 2}
    assert "123-45-6789" in json.dumps(sent["output"])  # the hook saw the tool's own output
    out = await execute(engine, "Gmail.DeleteEmail", {"email_id": "m1"})
    assert (
        out["success"] is False
        and out["output"]["error"]["message"] == "deleting is audited; output withheld"
    )
    assert "deleted m1" not in json.dumps(out) and await worker.runs() == {
        "Gmail.ListEmails": 1,
        "Gmail.DeleteEmail": 1,
    }


async def test_access_hook_hides_tools_from_one_user_only(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """deny hides Gmail.DeleteEmail from bob (lists, get, execute, MCP); ann sees it; answers are cached."""

    def answer(name: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["user_id"] == "bob@example.com":
            return {"deny": {"Gmail": {"tools": {"DeleteEmail": []}}}}
        return {}

    hooks = await hook_server(answer)
    engine, worker = await mail_engine(
        keyturn_engine,
        toolkit_worker,
        f"{{id: acl, kind: access, url: '{hooks.url('acl')}', tools: ['Gmail.*'], cache: 30s}}",
    )

    async def names(user: str) -> set[str]:
        status, page = await engine.api("GET", f"/v1/tools?limit=100&user_id={user}")
        assert status == 200
        return {t["qualified_name"] for t in page["items"]}

    assert "Gmail.DeleteEmail" in await names("ann@example.com")
    bob = await names("bob@example.com")
    assert "Gmail.DeleteEmail" not in bob and {"Gmail.SendEmail", "Notes.Add"} <= bob
    status, err = await engine.api("GET", "/v1/tools/Gmail.DeleteEmail?user_id=bob@example.com")
    assert status == 404 and err["error"] == "unknown_tool"
    status, err = await engine.api(
        "POST",
        "/v1/tools/execute",
        json={"tool_name": "Gmail.DeleteEmail", "input": {"email_id": "m1"}, "user_id": "bob@example.com"},
    )
    assert status == 404 and err["error"] == "unknown_tool"
    assert (await execute(engine, "Gmail.DeleteEmail", {"email_id": "m1"}))["success"] is True
    assert await worker.runs() == {"Gmail.DeleteEmail": 1}
    asked = hooks.received["acl"][0]
    assert set(asked["toolkits"]) == {"Gmail"}  # only the tools the hook governs
    assert set(asked["toolkits"]["Gmail"]["tools"]) == {"SendEmail", "ListEmails", "DeleteEmail"}
    assert hooks.calls("acl") == 2  # once per user, then from the cache

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": "bob@example.com"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        listed = {t.name for t in (await session.list_tools()).tools}
        assert "Gmail_SendEmail" in listed and "Gmail_DeleteEmail" not in listed
    status, page = await engine.api("GET", "/v1/tools?limit=100")  # no user: governed tools are hidden
    assert not any(t["qualified_name"].startswith("Gmail.") for t in page["items"])


async def test_reload_forgets_cached_access_answers(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """A reload that changes tools.hooks (same hook id, a new url) takes effect for the next call: the
    cached access answer of the old hook is not used for the rest of its cache time."""
    strict = await hook_server(lambda name, body: {"deny": {"Gmail": {"tools": {"DeleteEmail": []}}}})
    lenient = await hook_server(lambda name, body: {})
    worker = await toolkit_worker(mail=True)

    def body(url: str) -> str:
        hook = f"{{id: acl, kind: access, url: '{url}', tools: ['Gmail.*'], cache: 1h}}"
        return worker.yaml() + hooks_yaml(hook)

    engine = await keyturn_engine(body(strict.url("acl")))

    async def names() -> set[str]:
        status, page = await engine.api("GET", "/v1/tools?limit=100&user_id=bob@example.com")
        assert status == 200
        return {t["qualified_name"] for t in page["items"]}

    assert "Gmail.DeleteEmail" not in await names()
    assert "Gmail.DeleteEmail" not in await names()  # from the cache
    assert strict.calls("acl") == 1
    report = await engine.reconfigure(body(lenient.url("acl")))
    assert "tools.hooks" in report.changed
    assert "Gmail.DeleteEmail" in await names()
    assert lenient.calls("acl") == 1 and strict.calls("acl") == 1
    assert (await execute(engine, "Gmail.DeleteEmail", {"email_id": "m1"}, user="bob@example.com"))["success"]


async def test_access_hook_only_list(keyturn_engine: Any, toolkit_worker: Any, hook_server: Any) -> None:
    """With only, just the tools it names are allowed (deny ignored); a whole toolkit may be named."""
    answers = {
        "ann": {"only": {"Gmail": {"tools": {"ListEmails": []}}}, "deny": {"Gmail": {}}},
        "cat": {"only": {"gmail": {}}},
    }
    hooks = await hook_server(lambda name, body: answers[body["user_id"]])
    engine, _ = await mail_engine(
        keyturn_engine, toolkit_worker, f"{{id: acl, kind: access, url: '{hooks.url('acl')}'}}"
    )
    _, page = await engine.api("GET", "/v1/tools?limit=100&user_id=ann")
    assert {t["qualified_name"] for t in page["items"]} == {"Gmail.ListEmails"}
    _, page = await engine.api("GET", "/v1/formatted_tools?limit=100&user_id=cat")
    assert {f["function"]["name"] for f in page["items"]} == {
        "Gmail_SendEmail",
        "Gmail_ListEmails",
        "Gmail_DeleteEmail",
    }


@pytest.mark.parametrize("failure", ["closed", "open"])
async def test_slow_hook_follows_failure(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any, failure: str
) -> None:
    """A pre hook slower than its timeout: closed refuses the call (nothing runs), open lets it run."""

    async def slow(name: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3)
        return {"code": "OK"}

    hooks = await hook_server(slow)
    engine, worker = await mail_engine(
        keyturn_engine,
        toolkit_worker,
        f"{{id: slow, kind: pre, url: '{hooks.url('slow')}', timeout: 200ms, failure: {failure}}}",
    )
    out = await execute(engine, "Gmail.SendEmail", SEND)
    metrics = engine.app[METRICS]
    labels = {"hook": "slow", "kind": "pre", "outcome": "timeout"}
    assert metrics.registry.get_sample_value("keyturn_hook_calls_total", labels) == 1
    if failure == "closed":
        assert out["success"] is False and await worker.runs() == {}
        assert "hook slow did not answer within 0.2s" in out["output"]["error"]["message"]
    else:
        assert out["success"] is True and await worker.runs() == {"Gmail.SendEmail": 1}


async def test_broken_hook_answers_follow_failure(
    keyturn_engine: Any, toolkit_worker: Any, hook_server: Any
) -> None:
    """A 500, a code outside the contract and RATE_LIMIT_EXCEEDED each refuse (the last one retryable)."""
    from aiohttp import web

    answers: list[Any] = [web.Response(status=500), {"code": "MAYBE"}, {"code": "RATE_LIMIT_EXCEEDED"}]
    hooks = await hook_server(lambda name, body: answers.pop(0))
    engine, worker = await mail_engine(
        keyturn_engine, toolkit_worker, f"{{id: h, kind: pre, url: '{hooks.url('h')}'}}"
    )
    first, second, third = [await execute(engine, "Notes.Add", {"text": "x"}) for _ in range(3)]
    assert "hook h answered HTTP 500" in first["output"]["error"]["message"]
    assert "answered code 'MAYBE'" in second["output"]["error"]["message"]
    assert third["output"]["error"]["can_retry"] is True and await worker.runs() == {}


async def test_hooks_never_receive_a_token(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any, hook_server: Any
) -> None:
    """Pre and post hooks get the grant's scopes and user info, secret names, never a token or secret."""
    hooks = await hook_server(lambda name, body: {"code": "OK"})
    worker = await echo_worker(mini_provider.url("/userinfo"))
    extra = (
        worker.yaml()
        + "tools:\n  secrets: {GREETING: hello-from-config}\n  hooks:\n"
        + f"    - {{id: pre, kind: pre, url: '{hooks.url('pre')}'}}\n"
        + f"    - {{id: post, kind: post, url: '{hooks.url('post')}'}}\n"
        + f"    - {{id: acl, kind: access, url: '{hooks.url('acl')}'}}\n"
    )
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    body = {"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    _, out = await engine.api("POST", "/v1/tools/execute", json=body)
    async with engine.browser.get(out["output"]["authorization"]["url"]) as resp:
        assert resp.status == 200
    _, out = await engine.api("POST", "/v1/tools/execute", json=body)
    assert out["success"] is True, out
    _, out = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Secret", "input": {}, "user_id": USER}
    )
    assert out["output"]["value"] == "hello-from-config"
    grant = await engine.store.grants.find(USER, "acme")
    sent = json.dumps(hooks.received)
    for token in (grant.access_token, grant.refresh_token, *mini_provider.issued):
        assert token and token not in sent
    # the secret's value reached no hook (but the post hook saw Echo.Secret's output, which is that value)
    assert "hello-from-config" not in json.dumps([hooks.received["pre"], hooks.received["acl"]])
    context = hooks.received["pre"][0]["context"]
    assert context["authorization"] == [
        {"provider_id": "acme", "oauth2": {"scopes": list(grant.scopes), "user_info": dict(grant.user_info)}}
    ]
    assert hooks.received["pre"][1]["context"]["secrets"] == ["GREETING"]
    assert hooks.received["post"][0]["output"]["sub"] == "u-123"
