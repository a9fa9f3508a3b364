"""engine.flows.apikey: providers of type api_key, the key form, the check, the key as a tool's token."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
import sqlalchemy as sa
from aiohttp import web
from arcadepy import AsyncArcade
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from engine.errors import ConfigError
from engine.providers.load import load_text
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.token_scan import remember

USER = "kim@example.test"


class KeyService:
    """The service the keys are for, on loopback: GET /me answers 200 only to ``X-Api-Key: <good key>``."""

    def __init__(self) -> None:
        self.good = remember("ak_" + secrets.token_hex(16))
        self.seen: list[str] = []
        self.url = ""

    async def me(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Api-Key", "")
        self.seen.append(hashlib.sha256(key.encode()).hexdigest())
        if key == self.good:
            return web.json_response({"ok": True})
        return web.json_response({"error": "bad key"}, status=401)


@pytest.fixture
async def key_service() -> AsyncIterator[KeyService]:
    service = KeyService()
    app = web.Application()
    app.router.add_get("/me", service.me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    service.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield service
    await runner.cleanup()


def key_yaml(service: KeyService, *, check: bool = True) -> str:
    check_line = (
        f'      check: {{endpoint: "{service.url}/me", method: GET, header: X-Api-Key, prefix: ""}}\n'
        if check
        else ""
    )
    return (
        "auth:\n  providers:\n"
        "    - id: acme-keys\n      type: api_key\n      description: Acme Keys\n"
        "      fields:\n"
        '        - {name: api_key, label: "Acme API key", secret: true, pattern: "^ak_[0-9a-f]{32}$"}\n'
        "        - {name: region, label: Region}\n" + check_line
    )


def form_token(page: str) -> str:
    return page.split('name=csrf_token value="', 1)[1].split('"', 1)[0]


async def open_form(engine: Any, url: str) -> str:
    async with engine.browser.get(url) as resp:
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        assert "form-action 'self'" in csp and "script-src" not in csp and "default-src 'none'" in csp
        assert (
            resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
        )
        return await resp.text()


async def post_form(engine: Any, url: str, data: dict[str, str]) -> tuple[int, str]:
    async with engine.browser.post(url, data=data, allow_redirects=False) as resp:
        return resp.status, await resp.text()


def test_config_checks_the_fields() -> None:
    """type api_key needs fields with exactly one secret, valid patterns, an http(s) check endpoint."""
    base = "api: {development: true}\nauth:\n  providers:\n    - id: k\n      type: api_key\n"
    loaded = load_text(base + "      fields: [{name: key, secret: true}]\n")
    assert loaded.providers["k"].type == "api_key" and loaded.providers["k"].api_key is not None
    for body, where in (
        ("", "auth.providers[0].fields"),
        ("      fields: [{name: key}]\n", "auth.providers[0].fields"),
        ("      fields: [{name: key, secret: true, pattern: '('}]\n", "auth.providers[0].fields[0].pattern"),
        (
            "      fields: [{name: key, secret: true}]\n      check: {endpoint: 'ftp://x'}\n",
            "auth.providers[0].check.endpoint",
        ),
        ("      fields: [{name: key, secret: true}]\n      client_id: x\n", "auth.providers[0]"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_text(base + body)
        assert where in str(caught.value)


async def test_form_checks_the_key_then_stores_it_sealed(
    keyturn_engine: Any, key_service: KeyService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The link shows the form; a malformed key and one the service refuses show it again (new CSRF
    token, the old one spent); the good key completes the flow, is stored sealed and never shown."""
    engine = await keyturn_engine(key_yaml(key_service))
    body = {"user_id": USER, "auth_requirement": {"id": "acme-keys", "provider_type": "api_key"}}
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert (
        status == 200
        and auth["status"] == "pending"
        and auth["url"].startswith(engine.url + "/v1/oauth/start/")
    )
    url = auth["url"]
    page = await open_form(engine, url)
    assert "type=password" in page and "Acme API key" in page and "<script" not in page
    token = form_token(page)
    bad = "ak_" + "0" * 32
    status, again = await post_form(engine, url, {"csrf_token": token, "api_key": "nope", "region": "eu"})
    assert status == 400 and "does not have the expected form" in again and 'value="eu"' in again
    status, spent = await post_form(engine, url, {"csrf_token": token, "api_key": bad, "region": "eu"})
    assert status == 410  # the first token was used
    status, refused = await post_form(
        engine, url, {"csrf_token": form_token(again), "api_key": bad, "region": "eu"}
    )
    assert status == 400 and "did not accept this key" in refused and bad not in refused
    assert hashlib.sha256(bad.encode()).hexdigest() in key_service.seen
    status, done = await post_form(
        engine, url, {"csrf_token": form_token(refused), "api_key": key_service.good, "region": "eu"}
    )
    assert status == 200 and "connected to Acme Keys" in done
    _, finished = await engine.api("GET", f"/v1/auth/status?id={auth['id']}")
    assert finished["status"] == "completed"
    grant = await engine.store.grants.find(USER, "acme-keys")
    assert grant.access_token == key_service.good and grant.user_info == {"region": "eu"}
    assert grant.refresh_token is None and grant.next_refresh_at is None
    _, listed = await engine.api("GET", f"/v1/admin/user_connections?user_id={USER}")
    assert listed["items"][0]["provider_type"] == "api_key"
    answers = [page, again, spent, refused, done, json.dumps(auth), json.dumps(finished), json.dumps(listed)]
    assert all(key_service.good not in a for a in answers)
    assert key_service.good.encode() not in (tmp_path / "keyturn.db").read_bytes()
    assert key_service.good not in capsys.readouterr().out
    status, _ = await engine.api("DELETE", f"/v1/admin/user_connections/{grant.id}")
    assert status == 204 and await engine.store.grants.get(grant.id) is None


async def test_without_a_check_any_key_of_the_right_form_is_kept(
    keyturn_engine: Any, key_service: KeyService
) -> None:
    """A provider without check stores a key that matches its pattern, without calling anything."""
    engine = await keyturn_engine(key_yaml(key_service, check=False))
    body = {"user_id": USER, "auth_requirement": {"id": "acme-keys"}}
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    page = await open_form(engine, auth["url"])
    key = remember("ak_" + secrets.token_hex(16))
    status, _ = await post_form(
        engine, auth["url"], {"csrf_token": form_token(page), "api_key": key, "region": "x"}
    )
    assert status == 200 and key_service.seen == []
    assert (await engine.store.grants.find(USER, "acme-keys")).access_token == key


@pytest.mark.e2e
async def test_arcadepy_and_a_real_browser_fill_in_the_key(
    keyturn_engine: Any,
    key_service: KeyService,
    echo_worker: Any,
    chromium_driver: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """arcadepy executes a tool needing the key: a url; chromium fills the form (no JS needed); the
    tool then gets the key as its token; the key is in no response, no log line, not in the database."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    worker = await echo_worker()
    engine = await keyturn_engine(key_yaml(key_service) + worker.yaml())
    seen: list[str] = []

    async def keep(response: httpx.Response) -> None:
        seen.append((await response.aread()).decode())

    http = httpx.AsyncClient(event_hooks={"response": [keep]})
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0, http_client=http)
    driver = chromium_driver

    def run(fn: Any, *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    try:
        first = await client.tools.execute(tool_name="Echo.KeyInfo", input={}, user_id=USER)
        assert first.success is False and first.output and first.output.authorization
        auth = first.output.authorization
        assert auth.url and auth.status == "pending"
        await run(driver.get, auth.url)
        # every driver call in a thread: the engine serving the page runs on this event loop
        seen.append(await run(lambda: driver.page_source))
        await run(lambda: driver.find_element(By.NAME, "api_key").send_keys(key_service.good))
        await run(lambda: driver.find_element(By.NAME, "region").send_keys("us"))
        await run(lambda: driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click())
        body = await run(
            lambda: WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: (
                    "connected to Acme Keys" in d.find_element(By.TAG_NAME, "body").text
                    and d.find_element(By.TAG_NAME, "body").text
                )
            )
        )
        seen.append(await run(lambda: driver.page_source))
        assert "connected to Acme Keys" in body
        done = await asyncio.wait_for(client.auth.wait_for_completion(auth), 30)
        assert done.status == "completed"
        result = await client.tools.execute(tool_name="Echo.KeyInfo", input={}, user_id=USER)
        assert result.success and result.output and isinstance(result.output.value, dict)
        assert result.output.value["key_sha256"] == hashlib.sha256(key_service.good.encode()).hexdigest()[:16]
        assert result.output.value["region"] == "us"
        listed = await client.admin.user_connections.list()
        assert [c.provider_id for c in listed.items] == ["acme-keys"]
    finally:
        await client.close()
        await http.aclose()
    assert seen and all(key_service.good not in text for text in seen)
    assert key_service.good.encode() not in (tmp_path / "keyturn.db").read_bytes()
    for wal in tmp_path.glob("keyturn.db*"):
        assert key_service.good.encode() not in wal.read_bytes()
    assert key_service.good not in capsys.readouterr().out


@pytest.mark.e2e
async def test_over_mcp_the_key_is_asked_for_by_url_elicitation(
    keyturn_engine: Any, key_service: KeyService, echo_worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The official MCP client (handshake era): -32042 with the form's URL, the form posted, the
    elicitation completes, the retried call gets the key; the key is in no MCP message or log line."""
    worker = await echo_worker()
    engine = await keyturn_engine(key_yaml(key_service) + worker.yaml())
    messages: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        messages.append(message)

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": USER}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        await session.initialize()
        with pytest.raises(MCPError) as info:
            await session.call_tool("Echo_KeyInfo", {})
        assert info.value.code == -32042
        elicitation = info.value.data["elicitations"][0]
        url = elicitation["url"]
        page = await open_form(engine, url)
        status, _ = await post_form(
            engine, url, {"csrf_token": form_token(page), "api_key": key_service.good, "region": "ap"}
        )
        assert status == 200
        for _ in range(200):
            if elicitation["elicitationId"] in json.dumps([str(m) for m in messages]):
                break
            await asyncio.sleep(0.05)
        assert elicitation["elicitationId"] in json.dumps([str(m) for m in messages])
        result = await session.call_tool("Echo_KeyInfo", {})
        assert not result.is_error
        value = json.loads(result.content[0].text)
        assert value["key_sha256"] == hashlib.sha256(key_service.good.encode()).hexdigest()[:16]
    transcript = json.dumps([str(m) for m in messages]) + str(info.value.data) + str(result)
    assert key_service.good not in transcript
    assert key_service.good not in capsys.readouterr().out


async def test_form_posts_under_a_path_prefixed_public_url(
    keyturn_engine: Any, key_service: KeyService, prefix_proxy: Any
) -> None:
    """With api.public_url https-like under a path (/keyturn, served by a proxy), the key form posts to
    /keyturn/v1/oauth/start/{id}, and posting it through the proxy completes the flow."""
    import dataclasses

    from engine.wiring.settings import SETTINGS

    engine = await keyturn_engine(key_yaml(key_service, check=False))
    proxy = await prefix_proxy(engine.url, "/keyturn")
    holder = engine.app[SETTINGS]
    api = dataclasses.replace(holder.current.config.api, public_url=proxy.url)
    await holder.swap(
        dataclasses.replace(holder.current, config=dataclasses.replace(holder.current.config, api=api))
    )
    body = {"user_id": USER, "auth_requirement": {"id": "acme-keys", "provider_type": "api_key"}}
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200 and auth["url"].startswith(proxy.url + "/v1/oauth/start/")
    page = await open_form(engine, auth["url"])
    path = auth["url"][len(proxy.url) - len("/keyturn") :]
    assert f'action="{path}"' in page and path.startswith("/keyturn/v1/oauth/start/")
    key = "ak_" + "1" * 32
    status, done = await post_form(
        engine, auth["url"], {"csrf_token": form_token(page), "api_key": key, "region": "eu"}
    )
    assert status == 200 and key not in done
    assert proxy.outside == []


def _verifier_yaml(service: KeyService, url: str) -> str:
    return key_yaml(service, check=False) + (
        f"security:\n  api_keys: ['{API_KEY}']\n  user_verifier: {{mode: custom, url: '{url}'}}\n"
    )


async def test_custom_verifier_refuses_an_entered_key_confirmed_for_another_user(
    keyturn_engine: Any, key_service: KeyService, tmp_path: Path
) -> None:
    """With user_verifier custom, an entered key is held until confirm_user; confirming it as another user
    is 400 user_mismatch, fails the flow and stores nothing; confirming as the flow's user stores it."""
    engine = await keyturn_engine(_verifier_yaml(key_service, "http://127.0.0.1:9/verify"))
    for confirm_as, outcome in (("mallory@example.test", "failed"), (USER, "completed")):
        body = {"user_id": USER, "auth_requirement": {"id": "acme-keys", "provider_type": "api_key"}}
        _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
        page = await open_form(engine, auth["url"])
        key = remember("ak_" + secrets.token_hex(16))
        async with engine.browser.post(
            auth["url"],
            data={"csrf_token": form_token(page), "api_key": key, "region": "eu"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == f"http://127.0.0.1:9/verify?flow_id={auth['id']}"
        assert await engine.store.grants.find(USER, "acme-keys") is None  # held, not usable
        status, answer = await engine.api(
            "POST", "/v1/auth/confirm_user", json={"flow_id": auth["id"], "user_id": confirm_as}
        )
        flow = await engine.store.flows.get(auth["id"])
        _, polled = await engine.api("GET", f"/v1/auth/status?id={auth['id']}")
        if outcome == "failed":
            assert status == 400 and answer["error"] == "user_mismatch" and key not in json.dumps(answer)
            assert flow.status == "failed" and flow.error == "user_mismatch"
            assert polled["status"] == "failed"
            assert await engine.store.grants.find(USER, "acme-keys") is None
            assert await engine.store.grants.find(confirm_as, "acme-keys") is None
        else:
            assert status == 200 and answer["auth_id"] == auth["id"]
            assert flow.status == "completed" and polled["status"] == "completed"
            assert (await engine.store.grants.find(USER, "acme-keys")).access_token == key
    assert key.encode() not in (tmp_path / "keyturn.db").read_bytes()


@pytest.mark.e2e
async def test_login_verifier_refuses_an_entered_key_from_another_signed_in_user(
    keyturn_engine: Any, key_service: KeyService, oidc_provider: Any
) -> None:
    """With user_verifier login, bob's browser entering a key on alice's link gets "another account", the
    flow fails user_mismatch and the key is not kept; alice's own browser entering it connects her."""
    from tests.plugins.login import login_yaml, new_browser, sign_in

    alice_id, key_provider = (
        "alice@example.test",
        key_yaml(key_service, check=False).split("providers:\n", 1)[1],
    )
    yaml = login_yaml(oidc_provider).replace("  providers:\n", "  providers:\n" + key_provider, 1)
    engine = await keyturn_engine(yaml)
    browsers = {name: new_browser(engine) for name in ("bob", "alice")}
    try:
        for name, browser in browsers.items():
            assert (await sign_in(engine, browser, name)).status == 303
            body = {"user_id": alice_id, "auth_requirement": {"id": "acme-keys", "provider_type": "api_key"}}
            _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
            async with browser.get(auth["url"]) as resp:
                page = await resp.text()
            key = remember("ak_" + secrets.token_hex(16))
            async with browser.post(
                auth["url"], data={"csrf_token": form_token(page), "api_key": key, "region": "eu"}
            ) as resp:  # 303 to /login/verify, followed in the same browser
                status, answer = resp.status, await resp.text()
            flow = await engine.store.flows.get(auth["id"])
            grant = await engine.store.grants.find(alice_id, "acme-keys")
            if name == "bob":
                assert status == 403 and "another account" in answer and key not in answer
                assert flow.status == "failed" and flow.error == "user_mismatch"
                assert grant is None and await engine.store.grants.list() == []
                async with engine.store.engine.connect() as conn:
                    held = await conn.execute(
                        sa.text("SELECT pending_tokens FROM flows WHERE id = :id"), {"id": flow.id}
                    )
                    assert held.scalar_one() is None
            else:
                assert status == 200 and flow.status == "completed"
                assert grant is not None and grant.access_token == key
    finally:
        for browser in browsers.values():
            await browser.close()
