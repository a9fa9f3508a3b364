"""engine.api.connections_page: one's grants on /connections; Disconnect revokes; Reconnect starts a flow."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from engine.api.connections_page import connections
from engine.config.model import Branding
from engine.wiring.settings import SETTINGS
from tests.plugins.login import finish_flow, sign_in
from tests.plugins.token_scan import remember

ALICE = "alice@example.test"


async def connect(engine: Any, browser: Any, user: str = ALICE, account: str = "alice") -> Any:
    body = {"user_id": user, "auth_requirement": {"id": "op", "oauth2": {"scopes": ["email"]}}}
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    status, _, _ = await finish_flow(engine, browser, auth["url"], account)
    assert status == 200
    grant = await engine.store.grants.find(user, "op")
    remember(grant.access_token)
    remember(grant.refresh_token)
    return grant


async def page_of(engine: Any, browser: Any) -> str:
    async with browser.get(engine.url + "/connections") as resp:
        assert resp.status == 200
        return await resp.text()


def csrf_in(text: str) -> str:
    return text.split('name=csrf_token value="', 1)[1].split('"', 1)[0]


async def introspect(op: Any, token: str) -> bool:
    basic = base64.b64encode(f"{op.client_id}:{op.client_secret}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            op.issuer + "/token/introspection",
            headers={"Authorization": f"Basic {basic}"},
            data={"token": token},
        ) as resp,
    ):
        return bool((await resp.json())["active"])


@pytest.mark.e2e
async def test_disconnect_revokes_at_the_provider_and_is_gone(
    login_engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Disconnect: RFC 7009 at the provider (introspection says inactive), the grant is gone, audited."""
    engine = await login_engine()
    browser = engine.new_browser()
    grant = await connect(engine, browser)
    text = await page_of(engine, browser)
    assert "Example Docs" in text and "Active" in text and "email" in text and ALICE in text
    assert f'action="/connections/{grant.id}/disconnect"' in text
    assert await introspect(engine.op, grant.refresh_token)
    capsys.readouterr()
    async with browser.post(
        engine.url + f"/connections/{grant.id}/disconnect",
        data={"csrf_token": csrf_in(text)},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == engine.url + "/connections?notice=disconnected"
    assert await engine.store.grants.get(grant.id) is None
    assert not await introspect(engine.op, grant.refresh_token)
    assert not await introspect(engine.op, grant.access_token)
    text = await page_of(engine, browser)
    assert "no connections" in text and "Example Docs" not in text
    audit = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"keyturn.audit"' in x]
    [event] = [a for a in audit if a["event"] == "connection.disconnected"]
    assert event["provider"] == "op" and event["result"] == "revoked" and ALICE not in json.dumps(event)
    async with browser.get(engine.url + "/metrics") as resp:
        assert 'keyturn_connections_disconnected_total{provider="op"} 1.0' in await resp.text()


@pytest.mark.e2e
async def test_disconnect_refuses_bad_csrf_and_other_peoples_grants(login_engine: Any) -> None:
    """No token, another session's token, or bob's grant id: refused, and the grant stays."""
    engine = await login_engine()
    alice, bob = engine.new_browser(), engine.new_browser()
    grant = await connect(engine, alice)
    await sign_in(engine, bob, "bob")
    bobs_token = csrf_in(await page_of(engine, bob))
    url = engine.url + f"/connections/{grant.id}/disconnect"
    for form in ({}, {"csrf_token": bobs_token}):
        async with alice.post(url, data=form, allow_redirects=False) as resp:
            assert resp.status == 403
    async with bob.post(url, data={"csrf_token": bobs_token}, allow_redirects=False) as resp:
        assert resp.status == 404  # not bob's
    async with aiohttp.ClientSession() as stranger, stranger.post(url, allow_redirects=False) as resp:
        assert resp.status == 303 and "/login?next=" in resp.headers["Location"]
    assert (await engine.store.grants.get(grant.id)).status == "active"
    assert "Example Docs" not in await page_of(engine, bob)  # bob sees only his own


@pytest.mark.e2e
async def test_reconnect_starts_a_flow_for_the_same_provider_and_scopes(login_engine: Any) -> None:
    """needs_reauth shows Reconnect; it hands out a new flow link that completes and makes it active."""
    engine = await login_engine()
    browser = engine.new_browser()
    grant = await connect(engine, browser)
    await engine.store.grants.set_status(grant.id, "needs_reauth")
    text = await page_of(engine, browser)
    assert "Needs re-authorization" in text and f"/connections/{grant.id}/reconnect" in text
    async with browser.post(
        engine.url + f"/connections/{grant.id}/reconnect", data={"csrf_token": csrf_in(text)}
    ) as resp:
        assert resp.status == 200
        body = await resp.text()
        assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
    link = body.split('class=button href="', 1)[1].split('"', 1)[0]
    assert link.startswith(engine.url + "/v1/oauth/start/")
    flow = await engine.store.flows.get(link.rsplit("/", 1)[1])
    assert flow.user_id == ALICE and set(grant.scopes) <= set(flow.scopes)
    status, final, _ = await finish_flow(engine, browser, link, "alice")
    assert status == 200 and final.endswith("/connections?notice=connected")
    again = await engine.store.grants.find(ALICE, "op")
    remember(again.access_token)
    remember(again.refresh_token)
    assert again.status == "active"


def test_page_escapes_and_loads_nothing_from_elsewhere() -> None:
    """Provider and user strings are escaped; no script, no third-party URL; viewport for phones."""
    grant = SimpleNamespace(
        id="gr_1",
        provider_id="op",
        status="active",
        scopes=("read", "<b>write</b>"),
        user_info={"email": "<script>alert(1)</script>@example.test"},
        subject="s",
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        refreshed_at=None,
        user_id="a@example.test",
        account="<i>work</i>",
        is_default=False,
    )
    resp = connections(
        Branding(name="Acme <Corp>"),
        who='a"b@example.test',
        csrf="tok",
        grants=[grant],
        names={"op": "<i>Op</i>"},
    )
    text = resp.text or ""
    assert "<script" not in text and "&lt;script&gt;" in text and "&lt;i&gt;Op&lt;/i&gt;" in text
    assert "Acme &lt;Corp&gt;" in text and "a&quot;b@example.test" in text
    assert "http://" not in text and "https://" not in text
    assert 'name=viewport content="width=device-width' in text
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "script-src" not in csp
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
    assert "last refreshed never" in text and "Connected 2026-01-02 03:04 UTC" in text


@pytest.mark.e2e
async def test_two_accounts_listed_and_the_person_chooses_the_default(login_engine: Any) -> None:
    """Two accounts at one provider: both shown, the first connected marked Default; Make default (a
    CSRF-checked POST) moves the mark and the grant calls use; a bad CSRF token changes nothing."""
    engine = await login_engine()
    browser = engine.new_browser()
    work = await connect(engine, browser)
    body = {
        "user_id": ALICE,
        "auth_requirement": {"id": "op", "oauth2": {"scopes": ["email"]}},
        "account": "personal",
    }
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    browser.cookie_jar.clear(lambda c: not c.key.startswith("__Host-"))  # no provider session: sign in as bob
    status, _, _ = await finish_flow(engine, browser, auth["url"], "bob")
    assert status == 200
    personal = await engine.store.grants.find(ALICE, "op", "personal")
    remember(personal.access_token)
    remember(personal.refresh_token)
    assert personal.subject == "bob" and work.subject == "alice" and work.account == "default"
    text = await page_of(engine, browser)
    assert "personal (bob@example.test)" in text and "Account: alice@example.test" in text
    assert text.count("status default'>Default") == 1
    assert f'action="/connections/{personal.id}/default"' in text
    assert f'action="/connections/{work.id}/default"' not in text
    url = engine.url + f"/connections/{personal.id}/default"
    async with browser.post(url, data={"csrf_token": "wrong"}, allow_redirects=False) as resp:
        assert resp.status == 403
    assert (await engine.store.grants.find(ALICE, "op")).id == work.id
    async with browser.post(url, data={"csrf_token": csrf_in(text)}, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"].endswith("/connections?notice=default")
    assert (await engine.store.grants.find(ALICE, "op")).id == personal.id
    text = await page_of(engine, browser)
    assert f'action="/connections/{work.id}/default"' in text
    assert f'action="/connections/{personal.id}/default"' not in text


def links_in(text: str) -> list[str]:
    """Every form action and link of a page."""
    return re.findall(r'(?:action|href)="([^"]*)"', text)


def under(prefix: str, text: str) -> list[str]:
    found = links_in(text)
    assert found and all(u.startswith(prefix + "/") for u in found), found
    return found


async def prefixed(engine: Any, url: str) -> None:
    """Swap in ``api.public_url`` ``url`` (a reload would do the same)."""
    holder = engine.app[SETTINGS]
    current = holder.current
    api = dataclasses.replace(current.config.api, public_url=url)
    await holder.swap(dataclasses.replace(current, config=dataclasses.replace(current.config, api=api)))


@pytest.mark.e2e
async def test_pages_work_behind_a_path_prefixed_public_url(
    login_engine: Any, toolkit_worker: Any, prefix_proxy: Any
) -> None:
    """Behind a proxy that serves the engine at /keyturn (api.public_url with that path), every link and form
    action of the sign-in, connections, connect and approval pages stays under /keyturn, and following them
    through the proxy works: sign in, disconnect, connect, deny, sign out."""
    from arcadepy import AsyncArcade

    from tests.plugins.keyturn_engine import API_KEY
    from tests.plugins.oidc import follow_login

    worker = await toolkit_worker(mail=True)
    rules = "tools:\n  approval:\n    - {tools: ['Gmail.SendEmail'], approver: user, ttl: 10m}\n"
    engine = await login_engine(extra=worker.yaml() + rules)
    proxy = await prefix_proxy(engine.url, "/keyturn")
    await prefixed(engine, proxy.url)
    base = proxy.url  # http://127.0.0.1:PORT/keyturn
    origin = base[: -len("/keyturn")]
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[origin])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(base + "/login", allow_redirects=False) as resp:
            assert resp.status == 302
            callback = await follow_login(browser, resp.headers["Location"], account="alice")
        assert callback.startswith(base + "/login/callback?")
        async with browser.get(callback, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == base + "/connections"

        await engine.store.grants.upsert(
            ALICE, "op", access_token="at-prefix-test", refresh_token=None, id_token=None,
            token_type="Bearer", expires_at=None, scopes=["email"], subject="s", user_info=None,
            token_metadata={}, next_refresh_at=None,
        )  # fmt: skip
        async with browser.get(base + "/connections") as resp:
            text = await resp.text()
        assert resp.status == 200
        found = under("/keyturn", text)
        assert "/keyturn/logout" in found
        [disconnect] = [u for u in found if u.endswith("/disconnect")]
        async with browser.post(
            origin + disconnect, data={"csrf_token": csrf_in(text)}, allow_redirects=False
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith(base + "/connections?notice=")

        _, link = await engine.api(
            "POST", "/v1/connect/sessions", json={"user_id": ALICE, "providers": ["op"]}
        )
        assert link["url"].startswith(base + "/connect/")
        remember(link["url"].rsplit("/", 1)[1])
        async with browser.get(link["url"]) as resp:
            text = await resp.text()
        assert resp.status == 200
        [connect] = [u for u in under("/keyturn", text) if u.endswith("/op")]
        async with browser.post(
            origin + connect, data={"csrf_token": csrf_in(text)}, allow_redirects=False
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith(base + "/v1/oauth/start/")

        async with AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0) as client:
            send = {"recipient": "carol@example.com", "subject": "hi", "body": "hello"}
            held = await client.tools.execute(tool_name="Gmail.SendEmail", input=send, user_id=ALICE)
        assert held.output is not None and held.output.authorization is not None
        approval_url = held.output.authorization.url or ""
        assert approval_url.startswith(base + "/approvals/")
        async with browser.get(approval_url) as resp:
            text = await resp.text()
        assert resp.status == 200
        actions = set(under("/keyturn", text))
        assert actions == {"/keyturn/logout", approval_url[len(origin) :]}
        form = {"csrf_token": csrf_in(text), "decision": "deny", "reason": "no"}
        async with browser.post(approval_url, data=form, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == approval_url + "?notice=denied"

        async with browser.post(
            origin + "/keyturn/logout", data={"csrf_token": csrf_in(text)}, allow_redirects=False
        ) as resp:
            text = await resp.text()
        assert resp.status == 200 and "You are signed out." in text
        assert under("/keyturn", text) == ["/keyturn/login"]
    assert proxy.outside == []
