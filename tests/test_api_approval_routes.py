"""engine.api.approval_routes: the approval page for the signed-in user (login: at oidc-provider), CSRF."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arcadepy import AsyncArcade

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.login import sign_in

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
SEND = {
    "recipient": "carol@example.com",
    "subject": "<script>alert(1)</script>",
    "body": "Q3 numbers & plans",
}
RULES = "tools:\n  approval:\n    - {tools: ['Gmail.SendEmail'], approver: user, ttl: 10m}\n" + (
    "    - {tools: ['Gmail.DeleteEmail'], approver: app}\n"
)


def csrf_in(text: str) -> str:
    return text.split('name=csrf_token value="', 1)[1].split('"', 1)[0]


async def start(login_engine: Any, toolkit_worker: Any) -> tuple[Any, Any, AsyncArcade]:
    worker = await toolkit_worker(mail=True)
    engine = await login_engine(extra=worker.yaml() + RULES)
    return engine, worker, AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)


async def held(client: AsyncArcade, tool: str = "Gmail.SendEmail", inputs: Any = None) -> Any:
    answer = await client.tools.execute(tool_name=tool, input=inputs or SEND, user_id=ALICE)
    assert answer.success is False and answer.output is not None and answer.output.authorization is not None
    return answer.output.authorization


async def page(browser: Any, url: str) -> tuple[int, str]:
    async with browser.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def test_alice_approves_on_the_page_and_the_retry_runs_once(
    login_engine: Any, toolkit_worker: Any
) -> None:
    """The page shows app, tool and escaped inputs to alice; Approve (with CSRF) ends the wait; the
    identical retry runs once; changed inputs are held anew."""
    engine, worker, client = await start(login_engine, toolkit_worker)
    auth = await held(client)
    alice = engine.new_browser()
    status, _ = await page(alice, auth.url)
    assert status == 303  # not signed in: to /login?next=/approvals/...
    async with alice.get(auth.url, allow_redirects=False) as resp:
        assert resp.headers["Location"] == f"{engine.url}/login?next=/approvals/{auth.id}"
    assert (await sign_in(engine, alice, "alice", next_path=f"/approvals/{auth.id}")).status == 303
    status, text = await page(alice, auth.url)
    assert status == 200 and "security.api_keys[0]" in text and "Gmail.SendEmail" in text
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Q3 numbers &amp; plans" in text and "Waiting for your decision" in text

    async with alice.post(auth.url, data={"decision": "approve"}, allow_redirects=False) as resp:
        assert resp.status == 403  # no CSRF token: refused, nothing changes
    assert (await engine.store.approvals.get(auth.id)).status == "pending"
    waiting = asyncio.create_task(client.auth.wait_for_completion(auth))
    form = {"csrf_token": csrf_in(text), "decision": "approve"}
    async with alice.post(auth.url, data=form, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"].endswith(
            f"/approvals/{auth.id}?notice=approved"
        )
    assert (await asyncio.wait_for(waiting, 10)).status == "completed"
    status, text = await page(alice, auth.url + "?notice=approved")
    assert "You approved this call." in text and "may run this call once" in text and "id=approve" not in text

    ran = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    assert ran.success is True and await worker.runs() == {"Gmail.SendEmail": 1}
    assert (
        await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    ).success is False
    changed = await held(client, inputs={**SEND, "recipient": "eve@evil.test"})
    assert changed.id != auth.id and await worker.runs() == {"Gmail.SendEmail": 1}
    await client.close()


async def test_bob_cannot_see_or_decide_alices_call(login_engine: Any, toolkit_worker: Any) -> None:
    """Signed in as bob, alice's approval is an unknown one (404, nothing shown); his forms change nothing."""
    engine, worker, client = await start(login_engine, toolkit_worker)
    auth = await held(client)
    bob = engine.new_browser()
    await sign_in(engine, bob, "bob")
    status, text = await page(bob, auth.url)
    assert status == 404 and "Gmail.SendEmail" not in text and "carol@example.com" not in text
    status, connections = await page(bob, engine.url + "/connections")
    bobs_csrf = csrf_in(connections)
    for decision in ("approve", "deny"):
        async with bob.post(auth.url, data={"csrf_token": bobs_csrf, "decision": decision}) as resp:
            assert resp.status == 404
    alice = engine.new_browser()
    await sign_in(engine, alice, "alice")
    status, text = await page(alice, auth.url)
    async with alice.post(auth.url, data={"csrf_token": bobs_csrf, "decision": "approve"}) as resp:
        assert resp.status == 403  # another session's token
    assert (await engine.store.approvals.get(auth.id)).status == "pending"
    assert (
        await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    ).success is False
    assert await worker.runs() == {}
    await client.close()


async def test_deny_on_the_page_gives_the_agent_the_reason(login_engine: Any, toolkit_worker: Any) -> None:
    """alice denies with a reason; the agent's retry answers it; an app-approved call has no buttons here."""
    engine, worker, client = await start(login_engine, toolkit_worker)
    auth = await held(client)
    alice = engine.new_browser()
    await sign_in(engine, alice, "alice")
    _, text = await page(alice, auth.url)
    form = {"csrf_token": csrf_in(text), "decision": "deny", "reason": "not to carol <b>ever</b>"}
    async with alice.post(auth.url, data=form) as resp:
        body = await resp.text()
        assert resp.status == 200 and "You denied this call." in body and "not to carol &lt;b&gt;ever" in body
    retry = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    assert retry.success is False
    assert retry.output.error.message == (
        f"the call of Gmail.SendEmail was denied by {ALICE}: not to carol <b>ever</b>"
    )
    app_decides = await held(client, "Gmail.DeleteEmail", {"email_id": "m1"})
    _, text = await page(alice, app_decides.url)
    assert "The app decides on this call" in text and "id=approve" not in text
    form = {"csrf_token": csrf_in(text), "decision": "approve"}
    async with alice.post(app_decides.url, data=form) as resp:
        assert resp.status == 403 and "approved by the app" in await resp.text()
    assert await worker.runs() == {}
    await client.close()
