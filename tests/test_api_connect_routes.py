"""engine.api.connect_routes: connect links made over the API, used in a browser, refused when not yours."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa

from tests.plugins.fake_provider import FakeProvider
from tests.plugins.fake_provider import engine_config as fake_config
from tests.plugins.login import finish_flow, sign_in
from tests.plugins.token_scan import remember

ALICE = "alice@example.test"


async def make_link(engine: Any, **body: Any) -> dict[str, Any]:
    status, link = await engine.api("POST", "/v1/connect/sessions", json={"user_id": ALICE, **body})
    assert status == 201, link
    remember(urlsplit(link["url"]).path.rsplit("/", 1)[1])  # the token: never in a database or a log
    return link


def form_of(page: str, provider: str) -> tuple[str, str]:
    """The Connect form of ``provider`` on a connect page: (action, csrf_token)."""
    match = re.search(
        rf'<form method=post action="(/connect/[^"]+/{provider})"><input type=hidden name=csrf_token '
        r'value="([^"]+)">',
        page,
    )
    assert match, page
    return match.group(1), match.group(2)


async def test_a_link_connects_its_user(keyturn_engine: Any, fake_provider: FakeProvider) -> None:
    """The link lists the provider as not connected; Connect runs the user's flow; then it says Connected."""
    engine = await keyturn_engine(fake_config(fake_provider), scheduler=False)
    link = await make_link(engine, providers=["fake"])
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    assert link["url"].startswith(engine.url + "/connect/") and link["id"].startswith("cs_")
    async with engine.browser.get(link["url"]) as resp:
        page = await resp.text()
        assert resp.status == 200 and "Not connected" in page and ALICE in page
        assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
        assert (
            resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"
        )
    action, csrf = form_of(page, "fake")
    async with engine.browser.post(
        engine.url + action, data={"csrf_token": csrf}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        url = resp.headers["Location"]
    assert urlsplit(url).path.startswith("/v1/oauth/start/")
    for _ in range(3):  # start -> provider -> callback
        async with engine.browser.get(url, allow_redirects=False) as resp:
            if resp.status not in (302, 303):
                assert resp.status == 200 and "connected" in await resp.text()
                break
            url = urljoin(url, resp.headers["Location"])
    grant = await engine.store.grants.find(ALICE, "fake")
    assert grant is not None and grant.status == "active"
    async with engine.browser.get(link["url"]) as resp:
        page = await resp.text()
        assert "Connected" in page and "Not connected" not in page
    async with engine.store.engine.connect() as conn:
        [row] = (await conn.execute(sa.text("SELECT * FROM connect_sessions"))).all()
    token = urlsplit(link["url"]).path.rsplit("/", 1)[1]
    assert token not in str(row) and len(row.token_hash) == 64


async def test_without_csrf_nothing_starts(keyturn_engine: Any, fake_provider: FakeProvider) -> None:
    """A Connect post without the page's csrf_token (or with a wrong one) is refused; no flow is made."""
    engine = await keyturn_engine(fake_config(fake_provider))
    link = await make_link(engine)
    async with engine.browser.get(link["url"]) as resp:
        action, _ = form_of(await resp.text(), "fake")
    for data in ({}, {"csrf_token": "forged"}):
        async with engine.browser.post(engine.url + action, data=data, allow_redirects=False) as resp:
            assert resp.status == 403
    async with engine.store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 0


async def test_an_expired_link_shows_an_expired_page(
    keyturn_engine: Any, fake_provider: FakeProvider
) -> None:
    """After its expiry the link's page says it expired (410) and its Connect form no longer works."""
    engine = await keyturn_engine(fake_config(fake_provider))
    link = await make_link(engine, ttl="1m")
    async with engine.browser.get(link["url"]) as resp:
        action, csrf = form_of(await resp.text(), "fake")
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with engine.store.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE connect_sessions SET expires_at = :t"), {"t": past})
    async with engine.browser.get(link["url"]) as resp:
        assert resp.status == 410 and "expired" in await resp.text()
    async with engine.browser.post(
        engine.url + action, data={"csrf_token": csrf}, allow_redirects=False
    ) as resp:
        assert resp.status == 410
    async with engine.browser.get(engine.url + "/connect/not-a-token") as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 400, "body.user_id"),
        ({"user_id": ALICE, "providers": ["nope"]}, 404, "body.providers[0]"),
        ({"user_id": ALICE, "providers": "fake"}, 400, "body.providers"),
        ({"user_id": ALICE, "ttl": "forever"}, 400, "body.ttl"),
        ({"user_id": ALICE, "ttl": 999999}, 400, "body.ttl"),
        ({"user_id": ALICE, "next_uri": "https://evil.example/"}, 400, "next_uri"),
    ],
)
async def test_bad_requests_name_the_field(
    keyturn_engine: Any, fake_provider: FakeProvider, body: dict[str, Any], status: int, words: str
) -> None:
    """Bad input answers 4xx JSON {code, error, msg} naming the field; an API key is required."""
    engine = await keyturn_engine(fake_config(fake_provider))
    got, answer = await engine.api("POST", "/v1/connect/sessions", json=body)
    assert got == status and words in answer["msg"] and answer["code"] == status, answer
    async with engine.browser.post(engine.url + "/v1/connect/sessions", json={"user_id": ALICE}) as resp:
        assert resp.status == 401


@pytest.mark.e2e
async def test_login_mode_the_signed_in_user_connects(login_engine: Any) -> None:
    """user_verifier login: alice signs in (sent there by the link), connects op, and the grant is hers."""
    engine = await login_engine()
    link = await make_link(engine, providers=["op"])
    browser = engine.new_browser()
    async with browser.get(link["url"], allow_redirects=False) as resp:
        assert resp.status == 303 and "/login?next=/connect/resume" in resp.headers["Location"]
    signed = await sign_in(engine, browser, "alice", next_path="/connect/resume")
    assert signed.status == 303
    async with browser.get(signed.headers["Location"], allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == link["url"]
    async with browser.get(link["url"]) as resp:
        page = await resp.text()
        assert resp.status == 200 and "Signed in as alice@example.test" in page
    action, csrf = form_of(page, "op")
    async with browser.post(engine.url + action, data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303
        flow_url = resp.headers["Location"]
    status, final, _ = await finish_flow(engine, browser, flow_url, "alice")
    assert status == 200 and final == engine.url + "/connections?notice=connected"
    grant = await engine.store.grants.find(ALICE, "op")
    assert grant is not None and grant.status == "active"
    remember(grant.access_token)
    remember(grant.refresh_token)


@pytest.mark.e2e
async def test_login_mode_another_signed_in_user_is_refused(login_engine: Any) -> None:
    """bob, signed in, opens alice's link: a refusal page, his Connect post refused, no flow, no grant."""
    engine = await login_engine()
    link = await make_link(engine)
    bob = engine.new_browser()
    assert (await sign_in(engine, bob, "bob")).status == 303
    async with bob.get(link["url"]) as resp:
        page = await resp.text()
        assert resp.status == 403 and "another account" in page and "Connect</button>" not in page
    token = urlsplit(link["url"]).path.rsplit("/", 1)[1]
    async with bob.post(f"{engine.url}/connect/{token}/op", data={"csrf_token": "x"}) as resp:
        assert resp.status == 403
    async with engine.store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 0
    assert await engine.store.grants.list() == []
