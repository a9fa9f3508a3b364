"""engine.tools.approvals: held calls answered like authorizations, decided by the app, run once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx2
import mcp_types as types
import pytest
import sqlalchemy as sa
from arcadepy import AsyncArcade
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from engine.errors import ConfigError
from engine.metrics.registry import METRICS
from engine.store.base import now_utc
from tests.plugins.keyturn_engine import API_KEY

OTHER_KEY = "other-app-key-0123456789abcdef"
ANN = "ann@example.com"
SEND = {"recipient": "bob@example.com", "subject": "hi", "body": "hello"}
APPROVAL = "tools:\n  approval:\n    - {tools: ['Gmail.Send*', '*.Delete*'], approver: app, ttl: 10m}\n"
SECURITY = f"security: {{api_keys: ['{API_KEY}', {{key: '{OTHER_KEY}', tools: ['*']}}]}}\n"


@pytest.fixture
async def setup(keyturn_engine: Any, toolkit_worker: Any) -> AsyncIterator[tuple[Any, Any, AsyncArcade]]:
    worker = await toolkit_worker(mail=True)
    engine = await keyturn_engine(worker.yaml() + APPROVAL + SECURITY)
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    yield engine, worker, client
    await client.close()


async def decide(
    engine: Any, approval_id: str, decision: str, key: str = API_KEY, **extra: Any
) -> tuple[int, Any]:
    return await engine.api(
        "POST",
        f"/v1/approvals/{approval_id}",
        json={"decision": decision, **extra},
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_held_call_is_answered_like_an_authorization_and_runs_once(
    setup: tuple[Any, Any, AsyncArcade],
) -> None:
    """arcadepy sees success false with output.authorization {id, url}; wait_for_completion returns once
    the app approves; the identical retry runs exactly once; a third call is held again."""
    engine, worker, client = setup
    held = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    assert held.success is False and held.output is not None and held.output.authorization is not None
    auth = held.output.authorization
    assert auth.status == "pending" and auth.id.startswith("ap_")
    assert auth.url == f"{engine.url}/approvals/{auth.id}"
    again = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    assert again.output.authorization.id == auth.id  # the same request

    status, page = await engine.api("GET", f"/v1/approvals?user_id={ANN}&status=pending")
    assert status == 200 and [i["id"] for i in page["items"]] == [auth.id]
    item = page["items"][0]
    assert {k: item[k] for k in ("user_id", "tool_name", "inputs", "status", "url")} == {
        "user_id": ANN, "tool_name": "Gmail.SendEmail", "inputs": SEND, "status": "pending", "url": auth.url,
    }  # fmt: skip
    assert item["created_at"] < item["expires_at"]

    waiting = asyncio.create_task(client.auth.wait_for_completion(auth))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    status, decided = await decide(engine, auth.id, "approve")
    assert status == 200 and decided["status"] == "approved"
    done = await asyncio.wait_for(waiting, 10)
    assert done.status == "completed"
    assert await worker.runs() == {}  # approving runs nothing by itself

    ran = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    assert ran.success is True and ran.output.value["sent_to"] == "bob@example.com"
    held_again = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    assert held_again.success is False and held_again.output.authorization.id != auth.id
    assert await worker.runs() == {"Gmail.SendEmail": 1}
    status, page = await engine.api("GET", f"/v1/approvals?user_id={ANN}&status=used")
    assert [i["id"] for i in page["items"]] == [auth.id]
    metrics = engine.app[METRICS].registry
    for outcome, count in (("requested", 2), ("approved", 1), ("used", 1)):
        assert metrics.get_sample_value("keyturn_tool_approvals_total", {"outcome": outcome}) == count


async def test_changed_inputs_need_a_new_approval(setup: tuple[Any, Any, AsyncArcade]) -> None:
    """An approval covers its exact inputs: other inputs are held under a new approval."""
    engine, worker, client = setup
    first = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    await decide(engine, first.output.authorization.id, "approve")
    other = await client.tools.execute(
        tool_name="Gmail.SendEmail", input={**SEND, "recipient": "eve@evil.test"}, user_id=ANN
    )
    assert other.success is False
    assert other.output.authorization.id != first.output.authorization.id
    bob = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id="bob@example.com")
    assert bob.success is False  # another user's identical call is not covered either
    assert await worker.runs() == {}
    assert (await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)).success is True


async def test_deny_answers_the_agent_with_the_reason(
    setup: tuple[Any, Any, AsyncArcade], capsys: pytest.CaptureFixture[str]
) -> None:
    """A denial ends the wait; the retried call answers the reason and nothing runs; the audit record of the
    denial carries the reason on one line, at most 200 characters, a credential in it masked."""
    engine, worker, client = setup
    held = await client.tools.execute(tool_name="Gmail.DeleteEmail", input={"email_id": "m1"}, user_id=ANN)
    auth = held.output.authorization
    waiting = asyncio.create_task(client.auth.wait_for_completion(auth))
    secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    reason = f"keep that email\nits key is {secret} " + "x" * 300
    status, decided = await decide(engine, auth.id, "deny", reason=reason)
    assert status == 200 and decided["status"] == "denied" and decided["reason"] == reason
    assert (await asyncio.wait_for(waiting, 10)).status == "completed"
    retry = await client.tools.execute(tool_name="Gmail.DeleteEmail", input={"email_id": "m1"}, user_id=ANN)
    assert retry.success is False
    assert retry.output.error.message.startswith("the call of Gmail.DeleteEmail was denied by the app: keep")
    assert await worker.runs() == {}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"keyturn.audit"' in line]
    events = [e for e in lines if e["event"].startswith("approval.")]
    assert [e["event"] for e in events] == ["approval.requested", "approval.denied"]
    assert events[1]["decided_by"] == "app" and "reason" not in events[0]
    audited = events[1]["reason"]
    assert audited.startswith("keep that email its key is [redacted] xxx") and audited.endswith("…")
    assert len(audited) <= 200 and secret not in json.dumps(lines)
    status, err = await decide(engine, auth.id, "approve")
    assert status == 409 and err["error"] == "already_decided"


async def test_only_the_calling_app_sees_and_decides(setup: tuple[Any, Any, AsyncArcade]) -> None:
    """Another API key neither lists nor decides an app's approval (404); bad decisions are 400."""
    engine, _, client = setup
    held = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    approval_id = held.output.authorization.id
    status, page = await engine.api(
        "GET", "/v1/approvals?status=pending", headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert status == 200 and page["items"] == []
    status, err = await decide(engine, approval_id, "approve", key=OTHER_KEY)
    assert status == 404 and err["error"] == "not_found"
    status, err = await decide(engine, approval_id, "maybe")
    assert status == 400 and "decision" in err["msg"]
    status, err = await engine.api("GET", "/v1/approvals?status=whatever")
    assert status == 400 and "status" in err["msg"]
    status, err = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Gmail.SendEmail", "input": SEND}
    )
    assert status == 400 and err["error"] == "user_required"


async def test_two_identical_retries_run_once(setup: tuple[Any, Any, AsyncArcade]) -> None:
    """Of two concurrent identical retries after the approval, exactly one runs; the other is held anew."""
    engine, worker, client = setup
    held = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    await decide(engine, held.output.authorization.id, "approve")
    answers = await asyncio.gather(
        *(client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN) for _ in range(2))
    )
    assert sorted(a.success for a in answers) == [False, True]
    assert await worker.runs() == {"Gmail.SendEmail": 1}


async def test_expired_approval_fails_the_wait_and_is_asked_again(
    setup: tuple[Any, Any, AsyncArcade],
) -> None:
    """Past its ttl a pending approval reads failed, cannot be decided, and the call is held anew."""
    engine, _, client = setup
    held = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    approval_id = held.output.authorization.id
    async with engine.store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE approvals SET expires_at = :t"), {"t": now_utc() - timedelta(seconds=1)}
        )
    status, answer = await engine.api("GET", f"/v1/auth/status?id={approval_id}&wait=5")
    assert status == 200 and answer["status"] == "failed"
    status, err = await decide(engine, approval_id, "approve")
    assert status == 409 and "expired" in err["msg"]
    again = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ANN)
    assert again.output.authorization.id != approval_id


async def test_approval_over_mcp(setup: tuple[Any, Any, AsyncArcade]) -> None:
    """MCP (official client): a URL elicitation (-32042) with the approval page, elicitation/complete once
    the app approves, then the retry runs once; a client without URL elicitation gets the link in an error."""
    engine, worker, _ = setup
    messages: list[Any] = []

    async def on_message(message: Any) -> None:
        messages.append(message)

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": ANN}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        await session.initialize()
        with pytest.raises(MCPError) as info:
            await session.call_tool("Gmail_SendEmail", SEND)
        assert info.value.code == -32042
        elicitation = info.value.data["elicitations"][0]
        assert elicitation["mode"] == "url" and "/approvals/ap_" in elicitation["url"]
        approval_id = elicitation["url"].rsplit("/", 1)[1]
        status, _ = await decide(engine, approval_id, "approve")
        assert status == 200
        for _ in range(200):
            if elicitation["elicitationId"] in json.dumps([str(m) for m in messages]):
                break
            await asyncio.sleep(0.05)
        assert elicitation["elicitationId"] in json.dumps([str(m) for m in messages])
        result = await session.call_tool("Gmail_SendEmail", SEND)
        assert not result.is_error and result.structured_content["sent_to"] == "bob@example.com"
    assert await worker.runs() == {"Gmail.SendEmail": 1}

    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        result = await session.call_tool("Gmail_DeleteEmail", {"email_id": "m2"})
        assert result.is_error and "Approval required" in result.content[0].text
        assert f"{engine.url}/approvals/ap_" in result.content[0].text
    assert await worker.runs() == {"Gmail.SendEmail": 1}


def test_approval_config_checks() -> None:
    """approver user needs login:, a rule needs globs and a ttl of at least 10s."""
    from engine.providers.load import load_text

    def error(rule: str) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            load_text(f"api: {{development: true}}\ntools: {{approval: [{rule}]}}\n", source="engine.yaml")
        return info.value

    assert error("{tools: [Gmail.SendEmail]}").path == "tools.approval[0].approver"
    assert "login" in error("{tools: [Gmail.SendEmail], approver: user}").msg
    assert error("{tools: [], approver: app}").path == "tools.approval[0].tools"
    assert error("{tools: ['*'], approver: app, ttl: 5s}").path == "tools.approval[0].ttl"
    config = load_text(
        "api: {development: true}\ntools: {approval: [{tools: ['*'], approver: app}]}\n"
    ).config
    assert config.tools.approval[0].ttl == 600


async def test_approval_over_mcp_2026_07_28(setup: tuple[Any, Any, AsyncArcade]) -> None:
    """The official client in the 2026-07-28 era: input_required with a URL request for the approval page;
    the app approves while the client waits; the retry carrying requestState runs the tool once."""
    from mcp.client.client import Client

    engine, worker, _ = setup
    asked: list[Any] = []
    decisions: list[asyncio.Task[Any]] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        approval_id = params.url.rsplit("/", 1)[1]
        decisions.append(asyncio.ensure_future(decide(engine, approval_id, "approve")))  # a moment later
        return types.ElicitResult(action="accept")

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": ANN}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(
            streamable_http_client(engine.url + "/mcp", http_client=http),
            mode="2026-07-28",
            elicitation_callback=elicit,
        ) as client,
    ):
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("Gmail_SendEmail", SEND)
        assert not result.is_error and result.structured_content["sent_to"] == "bob@example.com"
    assert [(p.mode, p.url.rsplit("/", 2)[1]) for p in asked] == [("url", "approvals")]
    assert [(await d)[0] for d in decisions] == [200]
    assert await worker.runs() == {"Gmail.SendEmail": 1}
