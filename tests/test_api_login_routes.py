"""engine.api.login_routes against panva's oidc-provider: sign-in, sessions, the login verifier, CSRF."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from yarl import URL

from tests.plugins.login import SESSION_COOKIE, finish_flow, sign_in
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"


async def authorize(engine: Any, user: str = ALICE, scopes: tuple[str, ...] = ("email",)) -> dict[str, Any]:
    body = {"user_id": user, "auth_requirement": {"id": "op", "oauth2": {"scopes": list(scopes)}}}
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200 and auth["status"] == "pending", auth
    return auth


def set_cookie(resp: Any, name: str) -> str:
    headers = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(name + "=")]
    assert len(headers) == 1, resp.headers.getall("Set-Cookie", [])
    return str(headers[0])


async def test_alice_signs_in_with_a_hashed_host_only_session(login_engine: Any) -> None:
    """alice signs in: a 256-bit __Host- cookie (HttpOnly, Secure, SameSite=Lax, Path=/), stored hashed."""
    engine = await login_engine()
    browser = engine.new_browser()
    resp = await sign_in(engine, browser, "alice")
    assert resp.status == 303 and resp.headers["Location"] == engine.url + "/connections"
    header = set_cookie(resp, SESSION_COOKIE)
    attrs = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"httponly", "secure", "path", "samesite", "max-age"} <= attrs and "domain" not in attrs
    assert "samesite=lax" in header.lower() and "path=/;" in header.lower() + ";"
    value = resp.cookies[SESSION_COOKIE].value
    assert len(value) >= 43  # 32 random bytes, base64url
    [session] = await engine.store.sessions.list(user_id=ALICE)
    async with engine.store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM sessions"))).all()
    assert value not in json.dumps([list(map(str, r)) for r in rows])
    assert session.expires_at - datetime.now(UTC) > timedelta(minutes=59)
    async with browser.get(engine.url + "/connections") as page:
        text = await page.text()
        assert page.status == 200 and "Signed in as alice@example.test" in text
        assert "form-action 'self'" in page.headers["Content-Security-Policy"]


def audit_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]


async def test_flow_for_alice_completes_through_login_mode(
    login_engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """mode login: a browser without a session is sent to sign in, then alice's flow completes."""
    engine = await login_engine()
    auth = await authorize(engine)
    browser = engine.new_browser()  # no session yet
    visited: list[str] = []
    status, final, _ = await finish_flow(engine, browser, auth["url"], "alice", visited=visited)
    assert any(urlsplit(u).path == "/login" for u in visited), visited  # sent to sign in first
    assert status == 200 and final == engine.url + "/connections?notice=connected"
    grant = await engine.store.grants.find(ALICE, "op")
    assert grant is not None and grant.status == "active"
    remember(grant.access_token)
    remember(grant.refresh_token)
    assert (await engine.store.flows.get(auth["id"])).status == "completed"
    events = [e["event"] for e in audit_events(capsys.readouterr().out)]
    assert "login.succeeded" in events and "user.verified" in events and "flow.completed" in events


async def test_bob_finishing_alices_link_fails_with_nothing_stored(
    login_engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """bob's browser finishing alice's link gets a clear page; the flow fails user_mismatch; no grant."""
    engine = await login_engine()
    bob = engine.new_browser()
    assert (await sign_in(engine, bob, "bob")).status == 303
    auth = await authorize(engine)
    status, _, body = await finish_flow(engine, bob, auth["url"], "bob")
    assert status == 403 and "another account" in body and "bob@example.test" in body
    flow = await engine.store.flows.get(auth["id"])
    assert flow.status == "failed" and flow.error == "user_mismatch"
    assert await engine.store.grants.find(ALICE, "op") is None
    assert await engine.store.grants.list() == []
    async with engine.store.engine.connect() as conn:
        held = (await conn.execute(sa.text("SELECT pending_tokens FROM flows"))).scalars().all()
    assert held == [None]
    _, answer = await engine.api("GET", f"/v1/auth/status?id={auth['id']}")
    assert answer["status"] == "failed"
    [mismatch] = [e for e in audit_events(capsys.readouterr().out) if e["event"] == "user.mismatch"]
    assert mismatch["outcome"] == "denied" and ALICE not in json.dumps(mismatch)


async def test_verification_must_finish_in_the_browser_that_came_back(login_engine: Any) -> None:
    """A /login/verify link opened in another browser (even signed in as the user) does not complete."""
    engine = await login_engine()
    first, second = engine.new_browser(), engine.new_browser()
    assert (await sign_in(engine, second, "alice")).status == 303
    auth = await authorize(engine)
    async with first.get(auth["url"], allow_redirects=False) as resp:
        provider_url = resp.headers["Location"]
    from tests.plugins.oidc import follow_login

    callback = await follow_login(first, provider_url, account="mallory")
    async with first.get(callback, allow_redirects=False) as resp:
        assert resp.status == 303
        verify_url = resp.headers["Location"]
    assert urlsplit(verify_url).path == "/login/verify"
    async with second.get(verify_url, allow_redirects=False) as resp:
        assert resp.status == 403 and "same browser" in await resp.text()
    assert (await engine.store.flows.get(auth["id"])).status == "verifying"
    assert await engine.store.grants.list() == []


async def test_expired_or_revoked_session_is_sent_to_sign_in(login_engine: Any) -> None:
    """A revoked session and an expired one both get a redirect to /login?next=/connections."""
    engine = await login_engine()
    browser = engine.new_browser()
    await sign_in(engine, browser, "alice")
    async with browser.get(engine.url + "/connections", allow_redirects=False) as resp:
        assert resp.status == 200
    assert len(await engine.store.sessions.revoke(user_id=ALICE)) == 1
    async with browser.get(engine.url + "/connections", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == engine.url + "/login?next=/connections"
    await sign_in(engine, browser, "alice")
    async with browser.get(engine.url + "/connections", allow_redirects=False) as resp:
        assert resp.status == 200
    async with engine.store.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE sessions SET expires_at = :t"), {"t": datetime.now(UTC)})
    async with browser.get(engine.url + "/connections", allow_redirects=False) as resp:
        assert resp.status == 303 and "/login?next=" in resp.headers["Location"]


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/a\r\nSet-Cookie: x=1",
        "/\tevil",
        "javascript:alert(1)",
        "evil.example",
    ],
)
async def test_next_never_leaves_the_engine(login_engine: Any, next_path: str) -> None:
    """Open-redirect attempts in ?next= land on /connections of this engine."""
    engine = await login_engine()
    resp = await sign_in(engine, engine.new_browser(), "alice", next_path=next_path)
    assert resp.status == 303 and resp.headers["Location"] == engine.url + "/connections"


async def test_next_to_an_own_path_is_kept(login_engine: Any) -> None:
    """A path of this engine in ?next= (with its query) is where the person lands after sign-in."""
    engine = await login_engine()
    resp = await sign_in(engine, engine.new_browser(), "alice", next_path="/connections?notice=connected")
    assert resp.headers["Location"] == engine.url + "/connections?notice=connected"


async def test_session_id_set_before_sign_in_is_not_kept(login_engine: Any) -> None:
    """Session fixation: a planted id is replaced, and an earlier real session is ended, by signing in."""
    engine = await login_engine()
    browser = engine.new_browser()
    planted = "attacker-chosen-session-id-0123456789abcdef"
    browser.cookie_jar.update_cookies({SESSION_COOKIE: planted}, response_url=URL(engine.url))
    resp = await sign_in(engine, browser, "alice")
    first = resp.cookies[SESSION_COOKIE].value
    assert first != planted
    assert await engine.store.sessions.lookup(planted) is None
    resp = await sign_in(engine, browser, "alice")
    second = resp.cookies[SESSION_COOKIE].value
    assert second != first
    assert await engine.store.sessions.lookup(first) is None  # the earlier session ended
    assert await engine.store.sessions.lookup(second) is not None


async def csrf_of(engine: Any, browser: Any) -> str:
    async with browser.get(engine.url + "/connections") as resp:
        text = await resp.text()
    return text.split('name=csrf_token value="', 1)[1].split('"', 1)[0]


async def test_logout_needs_this_sessions_csrf_token(
    login_engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """POST /logout without a token, or with another session's, is refused; with its own it signs out."""
    engine = await login_engine()
    alice, bob = engine.new_browser(), engine.new_browser()
    await sign_in(engine, alice, "alice")
    await sign_in(engine, bob, "bob")
    bobs = await csrf_of(engine, bob)
    for form in ({}, {"csrf_token": bobs}, {"csrf_token": ""}):
        async with alice.post(engine.url + "/logout", data=form, allow_redirects=False) as resp:
            assert resp.status == 403, form
    async with alice.get(engine.url + "/connections", allow_redirects=False) as resp:
        assert resp.status == 200  # still signed in
    capsys.readouterr()
    async with alice.post(
        engine.url + "/logout", data={"csrf_token": await csrf_of(engine, alice)}, allow_redirects=False
    ) as resp:
        assert resp.status == 200 and "signed out" in await resp.text()
        assert resp.cookies[SESSION_COOKIE].value == ""
    assert await engine.store.sessions.list(user_id=ALICE) == []
    [revoked] = [e for e in audit_events(capsys.readouterr().out) if e["event"] == "session.revoked"]
    assert revoked["reason"] == "logout"


async def test_unverified_email_is_refused(login_engine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """user_claim email: an id_token whose email_verified is false gets no session (audited, counted)."""
    engine = await login_engine()
    browser = engine.new_browser()
    resp = await sign_in(engine, browser, "unverified-carol")
    assert resp.status == 403 and SESSION_COOKIE not in resp.cookies
    assert await engine.store.sessions.list() == []
    [failed] = [e for e in audit_events(capsys.readouterr().out) if e["event"] == "login.failed"]
    assert failed["reason"] == "email_unverified" and failed["outcome"] == "denied"
    async with browser.get(engine.url + "/metrics") as m:
        text = await m.text()
    assert 'keyturn_logins_total{outcome="failed",reason="email_unverified"} 1.0' in text


async def test_allowed_domains_refuse_other_domains(login_engine: Any) -> None:
    """allowed_domains: a verified address of another domain gets no session; a listed one does."""
    engine = await login_engine(login="login: {provider: corp, allowed_domains: [Corp.Example]}")
    resp = await sign_in(engine, engine.new_browser(), "alice")
    assert resp.status == 403 and "domain" in (await resp.text()) and SESSION_COOKIE not in resp.cookies
    engine = await login_engine(login="login: {provider: corp, allowed_domains: [example.test]}")
    resp = await sign_in(engine, engine.new_browser(), "alice")
    assert resp.status == 303 and SESSION_COOKIE in resp.cookies


async def test_user_claim_sub_names_the_user_unchanged(login_engine: Any) -> None:
    """user_claim sub: the session's user is the provider's subject, not lower-cased or mapped."""
    engine = await login_engine(login="login: {provider: corp, user_claim: sub}")
    await sign_in(engine, engine.new_browser(), "Dana")
    [session] = await engine.store.sessions.list()
    assert session.user_id == "Dana"


async def test_callback_from_another_browser_is_refused(login_engine: Any) -> None:
    """A provider answer carried to a browser that did not start the sign-in makes no session."""
    engine = await login_engine()
    started, other = engine.new_browser(), engine.new_browser()
    async with started.get(engine.url + "/login", allow_redirects=False) as resp:
        location = resp.headers["Location"]
    from tests.plugins.oidc import follow_login

    callback = await follow_login(started, location, account="alice")
    async with other.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400 and SESSION_COOKIE not in resp.cookies
    forged = callback.replace("state=", "state=x")
    async with started.get(forged, allow_redirects=False) as resp:  # a stray answer: refused, sign-in kept
        assert resp.status == 400 and "__Host-keyturn_login" not in resp.cookies
    async with started.get(callback, allow_redirects=False) as resp:  # the state was not spent by it
        assert resp.status == 303


async def test_signed_in_metrics(login_engine: Any) -> None:
    """A sign-in and a sign-out show in /metrics by outcome and reason."""
    engine = await login_engine()
    browser = engine.new_browser()
    await sign_in(engine, browser, "alice")
    async with browser.post(engine.url + "/logout", data={"csrf_token": await csrf_of(engine, browser)}):
        pass
    async with browser.get(engine.url + "/metrics") as resp:
        text = await resp.text()
    assert 'keyturn_logins_total{outcome="succeeded",reason="none"} 1.0' in text
    assert 'keyturn_sessions_revoked_total{reason="logout"} 1.0' in text


async def test_without_login_section_pages_say_so(keyturn_engine: Any) -> None:
    """An engine without login: answers /login and /connections with a 404 page, not a redirect loop."""
    engine = await keyturn_engine("")
    for path in ("/login", "/connections", "/login/verify?flow_id=fl_x"):
        async with engine.browser.get(engine.url + path, allow_redirects=False) as resp:
            assert resp.status == 404 and "not configured" in await resp.text()
