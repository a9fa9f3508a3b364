"""engine.flows.service over HTTP: authorize, browser start and callback, status, confirm_user, admin."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from engine.wiring.services import REVOKER, WAITERS
from tests.plugins.fake_provider import engine_config as fake_engine_config
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider
from tests.plugins.mini_provider import acme_config as config


@pytest.fixture
def provider(mini_provider: MiniProvider) -> MiniProvider:
    return mini_provider


async def authorize(engine: Any, scopes: list[str], **extra: Any) -> tuple[int, Any]:
    body = {
        "user_id": USER,
        "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": scopes}},
        **extra,
    }
    return await engine.api("POST", "/v1/auth/authorize", json=body)


async def click(engine: Any, url: str, **authorize_extra: str) -> Any:
    """Follow the flow link like a browser: start -> provider -> callback. Returns the last response."""
    async with engine.browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        provider_url = resp.headers["Location"]
    if authorize_extra:
        provider_url += "&" + urlencode(authorize_extra)
    async with engine.browser.get(provider_url, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    return await engine.browser.get(callback, allow_redirects=False)


async def test_full_flow_and_grant_encrypted(keyturn_engine: Any, provider: MiniProvider) -> None:
    """authorize -> click -> completed; the grant is stored and its tokens are not in the database file."""
    engine = await keyturn_engine(config(provider))
    status, body = await authorize(engine, ["read"])
    assert (
        status == 200
        and body["status"] == "pending"
        and body["url"].startswith(engine.url + "/v1/oauth/start/")
    )
    q = None
    resp = await click(engine, body["url"])
    assert resp.status == 200 and "connected" in await resp.text()
    assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"
    q = provider.authorize_params[-1]
    assert q["code_challenge_method"] == "S256" and q["scope"] == "read" and len(q["state"]) >= 43
    status, done = await engine.api("GET", f"/v1/auth/status?id={body['id']}")
    assert done["status"] == "completed" and done["scopes"] == ["read"] and "token" not in done["context"]
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.access_token in provider.issued and grant.subject == "u-123"
    async with engine.store.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT access_token, refresh_token FROM grants"))).one()
    assert grant.access_token.encode() not in raw[0] and grant.refresh_token.encode() not in raw[1]


async def test_already_granted_completes_at_once(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A user whose grant covers the scopes gets completed at once, without the token by default."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    _, again = await authorize(engine, ["read"])
    assert again["status"] == "completed" and again["context"] == {} and "url" not in again


async def test_token_exposure_api(keyturn_engine: Any, provider: MiniProvider) -> None:
    """With token_exposure: api, a completed answer carries context.token."""
    engine = await keyturn_engine(
        config(provider, security="api_keys: ['test-api-key-0123456789abcdef'], token_exposure: api")
    )
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    _, again = await authorize(engine, ["read"])
    assert again["context"]["token"] in provider.issued


async def test_incremental_scopes(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A second authorize with a new scope asks the provider for the union."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    _, more = await authorize(engine, ["write"])
    assert more["status"] == "pending" and more["scopes"] == ["read", "write"]
    await click(engine, more["url"])
    assert provider.authorize_params[-1]["scope"] == "read write"


async def test_replayed_state_and_code_exchanged_once(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Replaying a callback shows the expired page; the code went to the token endpoint once."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    async with engine.browser.get(body["url"], allow_redirects=False) as resp:
        provider_url = resp.headers["Location"]
    async with engine.browser.get(provider_url, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    first, second = await asyncio.gather(engine.browser.get(callback), engine.browser.get(callback))
    statuses = sorted([first.status, second.status])
    assert statuses == [200, 410], statuses
    assert len([c for c in provider.token_calls if c.get("grant_type") == "authorization_code"]) == 1


async def test_forged_state(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A state the engine never issued is refused and nothing is exchanged."""
    engine = await keyturn_engine(config(provider))
    async with engine.browser.get(engine.url + "/v1/oauth/callback?code=x&state=forged") as resp:
        assert resp.status == 410
    async with engine.browser.get(engine.url + "/v1/oauth/callback?code=x") as resp:
        assert resp.status == 404
    assert provider.token_calls == []


async def test_provider_error_escaped(keyturn_engine: Any, provider: MiniProvider) -> None:
    """error=access_denied fails the flow with that word; the description is escaped on the page."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    resp = await click(engine, body["url"], deny="1")
    text = await resp.text()
    assert resp.status == 400 and "&lt;b&gt;no&lt;/b&gt;" in text and "<b>no</b>" not in text
    _, status = await engine.api("GET", f"/v1/auth/status?id={body['id']}")
    assert status["status"] == "failed"
    flow = await engine.store.flows.get(body["id"])
    assert flow.error == "access_denied"


@pytest.mark.parametrize("mode", ["html", "500", "error200", "big", "slow"])
async def test_token_endpoint_faults_fail_cleanly(
    keyturn_engine: Any, provider: MiniProvider, mode: str
) -> None:
    """HTML, 500, a 200 with error, an oversized body or a slow answer fail the flow and store nothing."""
    engine = await keyturn_engine(config(provider, extra="lifecycle: {refresh_timeout: 1s}"))
    provider.mode = mode
    _, body = await authorize(engine, ["read"])
    resp = await click(engine, body["url"])
    assert resp.status in (400, 502), resp.status
    flow = await engine.store.flows.get(body["id"])
    assert flow.status == "failed" and flow.error
    assert await engine.store.grants.find(USER, "acme") is None


async def test_form_encoded_answer(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A GitHub-style form-encoded answer with comma scopes completes the flow."""
    engine = await keyturn_engine(config(provider))
    provider.mode = "form"
    _, body = await authorize(engine, ["read", "write"])
    resp = await click(engine, body["url"])
    assert resp.status == 200
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.scopes == ("read", "write") and grant.refresh_token is None


async def test_custom_verifier(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Custom verifier: 303 to the app, no grant until confirm_user; a wrong user gets user_mismatch."""
    sec = (
        "api_keys: ['test-api-key-0123456789abcdef'], "
        "user_verifier: {mode: custom, url: 'https://app.example/verify'}"
    )
    engine = await keyturn_engine(config(provider, security=sec))
    _, body = await authorize(engine, ["read"], next_uri="https://app.example/done")
    resp = await click(engine, body["url"])
    assert resp.status == 303
    target = urlsplit(resp.headers["Location"])
    assert target.netloc == "app.example" and parse_qs(target.query)["flow_id"] == [body["id"]]
    assert await engine.store.grants.find(USER, "acme") is None
    _, pending = await engine.api("GET", f"/v1/auth/status?id={body['id']}")
    assert pending["status"] == "pending"
    status, ok = await engine.api(
        "POST", "/v1/auth/confirm_user", json={"flow_id": body["id"], "user_id": USER}
    )
    assert status == 200 and ok == {"auth_id": body["id"], "next_uri": "https://app.example/done"}
    assert (await engine.store.grants.find(USER, "acme")).status == "active"
    _, second = await authorize(engine, ["write"])
    await click(engine, second["url"])
    status, err = await engine.api(
        "POST",
        "/api/v1/oauth/confirm_user",
        json={"flow_id": second["id"], "user_id": "mallory@example.test"},
    )
    assert status == 400 and err["error"] == "user_mismatch"
    flow = await engine.store.flows.get(second["id"])
    assert flow.status == "failed"
    assert (await engine.store.grants.find(USER, "acme")).scopes == ("read",)


async def test_long_poll(keyturn_engine: Any, provider: MiniProvider) -> None:
    """status?wait returns soon after completion; a timeout answers pending."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    started = time.monotonic()
    _, timed_out = await engine.api("GET", f"/v1/auth/status?id={body['id']}&wait=1")
    assert timed_out["status"] == "pending" and time.monotonic() - started >= 0.9
    waiter = asyncio.create_task(engine.api("GET", f"/v1/auth/status?id={body['id']}&wait=20"))
    await asyncio.sleep(0.2)
    await click(engine, body["url"])
    clicked = time.monotonic()
    _, done = await waiter
    assert done["status"] == "completed" and time.monotonic() - clicked < 5


async def test_api_key_required(keyturn_engine: Any, provider: MiniProvider) -> None:
    """/v1/auth/* without or with a wrong API key answers 401 JSON."""
    engine = await keyturn_engine(config(provider))
    async with engine.browser.post(engine.url + "/v1/auth/authorize", json={}) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    async with engine.browser.get(
        engine.url + "/v1/auth/status?id=x", headers={"Authorization": "Bearer nope"}
    ) as r:
        assert r.status == 401


async def test_bad_requests(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Unknown provider, bad JSON, missing user, disallowed next_uri and bad wait give clear 4xx errors."""
    engine = await keyturn_engine(config(provider))
    status, err = await engine.api(
        "POST", "/v1/auth/authorize", json={"user_id": USER, "auth_requirement": {"provider_id": "nope"}}
    )
    assert status == 404 and err["error"] == "unknown_provider"
    status, err = await engine.api("POST", "/v1/auth/authorize", data=b"{not json")
    assert status == 400 and "not valid JSON" in err["msg"]
    status, err = await engine.api(
        "POST", "/v1/auth/authorize", json={"auth_requirement": {"provider_id": "acme"}}
    )
    assert status == 400 and "user_id" in err["msg"]
    status, err = await authorize(engine, ["read"], next_uri="https://evil.example/")
    assert status == 400 and err["error"] == "next_uri_not_allowed"
    status, err = await engine.api("GET", "/v1/auth/status?id=x&wait=soon")
    assert status == 400
    status, err = await engine.api("GET", "/v1/auth/status?id=fl_unknown")
    assert status == 404


async def test_rate_limited(keyturn_engine: Any, provider: MiniProvider) -> None:
    """The 6th new flow (6 distinct scope sets) in the window is 429 with Retry-After; asking again is not."""
    engine = await keyturn_engine(config(provider))  # max_auth_attempts: 5 by default
    firsts = []
    for i in range(5):
        status, body = await authorize(engine, [f"scope{i}"])
        assert status == 200 and body["status"] == "pending"
        firsts.append(body)
    async with engine.session.post(
        engine.url + "/v1/auth/authorize",
        json={"user_id": USER, "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["s5"]}}},
    ) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    status, again = await authorize(engine, ["scope0"])  # an existing flow is still handed out
    assert status == 200 and (again["id"], again["url"]) == (firsts[0]["id"], firsts[0]["url"])


async def test_asking_again_returns_the_same_flow(keyturn_engine: Any, provider: MiniProvider) -> None:
    """20 authorizes in a row for the same user, provider and scopes get one flow (same id, url), no 429."""
    engine = await keyturn_engine(config(provider))
    answers = [await authorize(engine, ["read", "write"]) for _ in range(10)]
    answers += [await authorize(engine, ["write", "read"]) for _ in range(10)]  # scope order does not matter
    assert {status for status, _ in answers} == {200}
    assert len({(a["id"], a["url"]) for _, a in answers}) == 1
    async with engine.store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 1
    resp = await click(engine, answers[0][1]["url"])  # the link still works
    assert resp.status == 200
    _, done = await authorize(engine, ["read"])
    assert done["status"] == "completed"


async def test_next_uri_differs_new_flow(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A different next_uri starts a new flow (its link must lead back there); the same one reuses."""
    engine = await keyturn_engine(config(provider))
    _, a = await authorize(engine, ["read"], next_uri="https://app.example/a")
    _, a2 = await authorize(engine, ["read"], next_uri="https://app.example/a")
    _, b = await authorize(engine, ["read"], next_uri="https://app.example/b")
    _, none = await authorize(engine, ["read"])
    assert a["id"] == a2["id"] and len({a["id"], b["id"], none["id"]}) == 3
    assert (await engine.store.flows.get(b["id"])).next_uri == "https://app.example/b"


async def test_nearly_expired_or_finished_flow_not_reused(
    keyturn_engine: Any, provider: MiniProvider
) -> None:
    """A pending flow with under a minute left, or one that failed, is not handed out again: a new one is."""
    engine = await keyturn_engine(config(provider))
    _, first = await authorize(engine, ["read"])
    async with engine.store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE flows SET expires_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) + timedelta(seconds=30), "id": first["id"]},
        )
    _, second = await authorize(engine, ["read"])
    assert second["id"] != first["id"] and second["status"] == "pending"
    _, third = await authorize(engine, ["read"])
    assert third["id"] == second["id"]
    await click(engine, second["url"], deny="1")
    _, fourth = await authorize(engine, ["read"])
    assert fourth["id"] not in (first["id"], second["id"]) and fourth["status"] == "pending"


async def test_concurrent_authorizes_one_flow(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Concurrent identical authorizes get one flow (the database decides), counted once."""
    engine = await keyturn_engine(
        config(
            provider,
            security="api_keys: ['test-api-key-0123456789abcdef'], rate_limiting: {max_auth_attempts: 2}",
        )
    )
    answers = await asyncio.gather(*(authorize(engine, ["read"]) for _ in range(12)))
    assert {status for status, _ in answers} == {200}
    assert len({a["id"] for _, a in answers}) == 1
    async with engine.store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 1
    assert (await authorize(engine, ["other"]))[0] == 200  # the race cost one attempt, not twelve
    assert (await authorize(engine, ["third"]))[0] == 429


async def test_admin_connections_and_revoke(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Admin lists connections without tokens and DELETE revokes at the provider then removes the grant."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    status, page = await engine.api("GET", f"/v1/admin/user_connections?user_id={USER}")
    assert status == 200 and page["total_count"] == 1
    item = page["items"][0]
    assert item["provider_id"] == "acme" and item["connection_status"] == "active"
    assert not any(t in json.dumps(page) for t in provider.issued)
    status, cached = await engine.api("GET", f"/v1/auth/status?id={item['id']}")
    assert status == 200 and cached["status"] == "completed"
    status, _ = await engine.api("DELETE", f"/v1/admin/user_connections/{item['id']}")
    assert status == 204
    status, _ = await engine.api("GET", f"/v1/auth/status?id={item['id']}")
    assert status == 404  # the remembered answer was dropped with the grant
    assert [r["token_type_hint"] for r in provider.revocations] == ["refresh_token", "access_token"]
    assert await engine.store.grants.find(USER, "acme") is None
    status, _ = await engine.api("DELETE", f"/v1/admin/user_connections/{item['id']}")
    assert status == 404


async def test_revoke_503_keeps_grant_unusable(keyturn_engine: Any, provider: MiniProvider) -> None:
    """A 503 at revocation leaves the grant revoked (unusable) for a later retry."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    grant = await engine.store.grants.find(USER, "acme")
    provider.revoke_status = 503
    status, _ = await engine.api("DELETE", f"/v1/admin/user_connections/{grant.id}")
    assert status == 204
    assert (await engine.store.grants.get(grant.id)).status == "revoked"
    provider.revoke_status = 200
    assert await engine.app[REVOKER].revoke(grant.id)
    assert await engine.store.grants.get(grant.id) is None


async def test_revoke_with_provider_removed_says_not_revoked(
    keyturn_engine: Any, provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grant whose provider left the config is deleted; the answer, audit and log say not revoked there."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    grant = await engine.store.grants.find(USER, "acme")
    await engine.reconfigure("security: {api_keys: ['test-api-key-0123456789abcdef']}")  # acme removed
    capsys.readouterr()
    status, answer = await engine.api("DELETE", f"/v1/admin/user_connections/{grant.id}")
    assert status == 200 and answer["outcome"] == "not_revoked_at_provider"
    assert answer["deleted"] is True and answer["revoked_at_provider"] is False
    assert answer["reason"] == "provider_not_configured" and "not revoked at the provider" in answer["msg"]
    assert provider.revocations == [] and await engine.store.grants.get(grant.id) is None
    out = capsys.readouterr().out
    [record] = [json.loads(x) for x in out.splitlines() if '"event":"grant.revoked"' in x]
    assert record["outcome"] == "failure" and record["revoked_at_provider"] is False
    assert record["reason"] == "provider_not_configured"
    assert "grant_not_revoked_at_provider" in out


async def test_reaper_retry_with_provider_removed_deletes_and_says_so(
    keyturn_engine: Any, provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revocation left for the reaper whose provider was then removed is deleted with the same outcome."""
    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    await click(engine, body["url"])
    grant = await engine.store.grants.find(USER, "acme")
    provider.revoke_status = 503
    assert (await engine.app[REVOKER].revoke(grant.id)).outcome == "retry_later"
    await engine.reconfigure("security: {api_keys: ['test-api-key-0123456789abcdef']}")
    capsys.readouterr()
    from engine.wiring.services import LIFECYCLE

    await engine.app[LIFECYCLE].reap()
    assert await engine.store.grants.get(grant.id) is None
    out = capsys.readouterr().out
    [record] = [json.loads(x) for x in out.splitlines() if '"event":"grant.revoked"' in x]
    assert record["outcome"] == "failure" and record["reason"] == "provider_not_configured"


async def test_idle_waiters_do_not_poll(keyturn_engine: Any, provider: MiniProvider) -> None:
    """Hundreds of held status requests make no database query while they wait, even when every timer due
    in the next 25 s fires (the loop's clock is moved on, not waited for); all wake on completion."""
    import aiohttp
    import sqlalchemy as sa_events

    engine = await keyturn_engine(config(provider))
    _, body = await authorize(engine, ["read"])
    queries: list[str] = []
    reads: list[str] = []  # status reads begun
    answered: list[str] = []  # status reads done (the request then waits, or answers)
    service, waiters = engine.flows, engine.app[WAITERS]
    status_once = service._status_once

    async def counted(auth_id: str) -> Any:
        reads.append(auth_id)  # counted when called, before any I/O: a poll is seen at once
        answer = await status_once(auth_id)
        answered.append(auth_id)
        return answer

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        queries.append(statement)

    loop = asyncio.get_running_loop()
    real_time = loop.time
    sync_engine = engine.store.engine.sync_engine
    sa_events.event.listen(sync_engine, "before_cursor_execute", count)
    service._status_once = counted
    # no connection limit, so all 300 are held at the engine at once (aiohttp's default is 100 per session)
    client = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {API_KEY}"}, connector=aiohttp.TCPConnector(limit=0)
    )

    async def held() -> Any:
        async with client.get(f"{engine.url}/v1/auth/status?id={body['id']}&wait=59") as resp:
            return await resp.json()

    tasks: list[asyncio.Task[Any]] = []
    try:
        for held_now in (100, 200, 300):  # in steps below the listen backlog (128), each one held first
            tasks += [asyncio.create_task(held()) for _ in range(100)]
            async with asyncio.timeout(60):  # a bound for a broken engine, not a measurement
                while len(waiters) < held_now or len(answered) < held_now:
                    await asyncio.sleep(0.01)
        settled = len(queries)
        assert len(reads) == 300, "a status request read its flow more than once before completion"
        assert settled <= 300 * 2  # one read each when they arrived (each done: the requests all wait now)
        # every timer due in the next 25 s fires now: a waiter that polls (a recheck) would read again
        loop.time = lambda: real_time() + 25.0  # type: ignore[method-assign]
        for _ in range(200):
            await asyncio.sleep(0)
        loop.time = real_time  # type: ignore[method-assign]
        assert len(reads) == 300, "waiting requests re-read their flow before it changed"
        assert len(queries) == settled, "waiting requests polled the database"
        assert len(waiters) == 300
        await click(engine, body["url"])
        answers = await asyncio.gather(*tasks)
        assert all(a["status"] == "completed" for a in answers)
        assert len(reads) == 600  # exactly one more read each, once woken
    finally:
        loop.time = real_time  # type: ignore[method-assign]
        for task in tasks:
            task.cancel()  # a failed check does not hold the teardown for the requests' 59 s
        del service._status_once
        sa_events.event.remove(sync_engine, "before_cursor_execute", count)
        await client.close()


async def test_explicit_id_never_falls_back(keyturn_engine: Any, provider: MiniProvider) -> None:
    """auth_requirement.id must name an entry exactly: provider_id acme does not rescue an unknown id."""
    engine = await keyturn_engine(config(provider))
    requirement = {"provider_id": "acme", "id": "acme-eu", "oauth2": {"scopes": ["read"]}}
    status, err = await engine.api(
        "POST", "/v1/auth/authorize", json={"user_id": USER, "auth_requirement": requirement}
    )
    assert status == 404 and err["error"] == "unknown_provider" and "'acme-eu'" in err["msg"]


async def test_redirect_url_from_security_oauth_is_sent_and_served(
    keyturn_engine: Any, provider: MiniProvider
) -> None:
    """security.oauth.redirect_urls (seed 003's /api/oauth/callback) is the redirect URI sent and served."""
    engine = await keyturn_engine(config(provider))
    callback = engine.url + "/api/oauth/callback"
    await engine.reconfigure(
        config(provider, security=f"api_keys: ['{API_KEY}'], oauth: {{redirect_urls: ['{callback}']}}")
    )
    _, body = await authorize(engine, ["read"])
    resp = await click(engine, body["url"])
    assert resp.status == 200 and "connected" in await resp.text()
    assert provider.authorize_params[-1]["redirect_uri"] == callback
    assert str(resp.url).startswith(callback + "?")
    assert (await engine.store.grants.find(USER, "acme")) is not None


async def _fake_flow(engine: Any, fake: Any) -> tuple[str, Any]:
    """authorize with the fake provider and follow the link: (flow id, the callback's response)."""
    body = {"user_id": USER, "auth_requirement": {"provider_id": "fake", "oauth2": {"scopes": ["read"]}}}
    status, flow = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200 and flow["status"] == "pending", flow
    return flow["id"], await click(engine, flow["url"])


async def test_token_answer_302_with_json_fails_the_flow(keyturn_engine: Any, fake_provider: Any) -> None:
    """A token answer with HTTP 302 carrying JSON tokens fails the flow (http_error); nothing is stored."""
    engine = await keyturn_engine(fake_engine_config(fake_provider))
    fake_provider.token_answers = ["redirect_json"]
    flow_id, resp = await _fake_flow(engine, fake_provider)
    assert resp.status in (400, 502), resp.status
    flow = await engine.store.flows.get(flow_id)
    assert flow.status == "failed" and flow.error == "http_error"
    assert await engine.store.grants.find(USER, "fake") is None


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(float("nan"), None), (-5, None), ("soon", None), (1e20, 10 * 365 * 86400.0), ("7200", 7200.0)],
)
async def test_code_exchange_with_strange_expires_in(
    keyturn_engine: Any, fake_provider: Any, expires_in: Any, lifetime: float | None
) -> None:
    """expires_in NaN, negative, text or 1e20: the flow completes, expiry unknown or clamped to ten years."""
    engine = await keyturn_engine(fake_engine_config(fake_provider))
    fake_provider.expires_in = expires_in
    flow_id, resp = await _fake_flow(engine, fake_provider)
    assert resp.status == 200, await resp.text()
    assert (await engine.store.flows.get(flow_id)).status == "completed"
    grant = await engine.store.grants.find(USER, "fake")
    assert grant.status == "active" and grant.refresh_token in fake_provider.live_refresh_tokens()
    if lifetime is None:
        assert grant.expires_at is None
    else:
        left = (grant.expires_at - datetime.now(UTC)).total_seconds()
        assert lifetime - 60 < left <= lifetime


async def test_account_names_its_own_flow_and_grant(keyturn_engine: Any, provider: MiniProvider) -> None:
    """authorize with account 'work' is a flow of its own (not the default's, not completed by it); its
    callback stores a second grant; asking again without an account completes with the first one."""
    engine = await keyturn_engine(config(provider))
    _, first = await authorize(engine, ["read"])
    _, first_again = await authorize(engine, ["read"], account="default")
    assert first_again["id"] == first["id"]  # "default" is the account a call without one gets
    await click(engine, first["url"])
    _, work = await authorize(engine, ["read"], account="work")
    _, work_again = await authorize(engine, ["read"], account="work")
    assert work["status"] == "pending" and work_again["id"] == work["id"]
    assert (await engine.store.flows.get(work["id"])).account == "work"
    await click(engine, work["url"])
    grants = {g.account: g for g in await engine.store.grants.list(user_id=USER)}
    assert set(grants) == {"default", "work"} and grants["default"].id != grants["work"].id
    _, plain = await authorize(engine, ["read"])
    assert plain["status"] == "completed" and plain["id"] == grants["default"].id
    _, named = await authorize(engine, ["read"], account="work")
    assert named["status"] == "completed" and named["id"] == grants["work"].id
    status, bad = await authorize(engine, ["read"], account="")
    assert status == 400 and "account" in bad["msg"]
