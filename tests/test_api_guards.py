"""engine.api.guards: audit and metrics wired into a running engine, seen from outside after a real flow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.wiring.services import REFRESHER
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


async def test_flow_moves_metrics_and_audits_without_secrets(
    keyturn_engine: Any, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flow shows in /metrics by provider and outcome; audit lines carry a user_ref, not the user id."""
    engine = await keyturn_engine(acme_config(mini_provider))
    capsys.readouterr()
    _, auth = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}},
    )
    async with engine.browser.get(auth["url"]) as resp:
        assert resp.status == 200
    async with engine.browser.get(engine.url + "/metrics") as resp:
        text = await resp.text()
    assert 'keyturn_auth_flows_total{outcome="completed",provider="acme"} 1.0' in text
    assert 'keyturn_http_requests_total{method="POST",route="/v1/auth/authorize",status="200"} 1.0' in text
    assert USER not in text
    out = capsys.readouterr().out
    audit = [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]
    events = [a["event"] for a in audit]
    assert "flow.started" in events and "flow.completed" in events
    assert all("user_ref" in a for a in audit if a["event"].startswith("flow."))
    assert USER not in out
    for token in mini_provider.issued:
        assert token not in out and token not in text


async def test_security_events_are_audited(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each security event shows up once its path runs, and no audit line carries a token or a user id."""
    from engine.wiring.services import REFRESHER

    worker = await echo_worker(mini_provider.url("/userinfo"))
    a = await keyturn_engine(acme_config(mini_provider, extra=worker.yaml()))
    sec = (
        "api_keys: ['test-api-key-0123456789abcdef'], token_exposure: api, "
        "rate_limiting: {max_auth_attempts: 2}, user_verifier: {mode: custom, url: 'https://app.example/verify'}"
    )
    b = await keyturn_engine(acme_config(mini_provider, security=sec))
    body = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    # a: flow started/completed, tool executed/denied, refresh ok/failed/needs_reauth, revoke, bad key
    _, out = await a.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    )
    async with a.browser.get(out["output"]["authorization"]["url"]) as resp:
        assert resp.status == 200
    _, out = await a.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    )
    assert out["success"]
    grant = await a.store.grants.find(USER, "acme")
    mini_provider.refresh_plan = ["500", "ok", "invalid_grant"]
    for _ in range(3):
        await a.app[REFRESHER].refresh(grant.id, force=True)
    await a.api("DELETE", f"/v1/admin/user_connections/{grant.id}")
    async with a.browser.post(
        a.url + "/v1/auth/authorize", json=body, headers={"Authorization": "Bearer nope"}
    ):
        pass
    _, denied = await a.api("POST", "/v1/auth/authorize", json=body)
    async with a.browser.get(denied["url"], allow_redirects=False) as resp:
        provider_url = resp.headers["Location"] + "&deny=1"
    async with a.browser.get(provider_url):
        pass
    # b: user verified / mismatch, token exposed, rate limited; a fresh user: the rate limit counts in
    # the shared database, where a already started two flows for USER
    user_b = "bea@example.test"
    for user in (user_b, "mallory@example.test"):
        _, flow = await b.api("POST", "/v1/auth/authorize", json={**body, "user_id": user})
        async with b.browser.get(flow["url"], allow_redirects=False) as resp:
            to_provider = resp.headers["Location"]
        async with b.browser.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with b.browser.get(callback, allow_redirects=False):
            pass
        await b.api("POST", "/v1/auth/confirm_user", json={"flow_id": flow["id"], "user_id": user_b})
    await b.api("POST", "/v1/auth/authorize", json={**body, "user_id": user_b})  # the token is exposed
    for i in range(3):  # three new flows (asking again for one would not count)
        requirement = {"id": "acme", "oauth2": {"scopes": [f"s{i}"]}}
        await b.api(
            "POST",
            "/v1/auth/authorize",
            json={"user_id": "rate@example.test", "auth_requirement": requirement},
        )
    out_text = capsys.readouterr().out
    events = {json.loads(line)["event"] for line in out_text.splitlines() if '"keyturn.audit"' in line}
    expected = {
        "flow.started", "flow.completed", "flow.failed", "tool.executed", "tool.denied", "grant.refreshed",
        "grant.refresh_failed", "grant.needs_reauth", "grant.revoked", "api_key.denied", "user.verified",
        "user.mismatch", "token.exposed", "rate_limited",
    }  # fmt: skip
    assert expected <= events, expected - events
    assert USER not in out_text and "mallory@example.test" not in out_text and user_b not in out_text
    for token in mini_provider.issued:
        assert token not in out_text


async def test_valid_keys_pass_an_address_locked_by_bad_ones(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """25 bad requests from 127.0.0.1, then a valid config key and store key get 200, a bad key 429."""
    engine = await keyturn_engine(acme_config(mini_provider))
    _, store_key = await engine.store.api_keys.create("app-two")
    for _ in range(25):
        async with engine.browser.get(
            engine.url + "/v1/tools", headers={"Authorization": "Bearer kt_bad_key"}
        ) as resp:
            assert resp.status in (401, 429)
    assert resp.status == 429
    assert (await engine.api("GET", "/v1/tools"))[0] == 200
    async with engine.browser.get(engine.url + "/v1/tools", headers={"Authorization": store_key}) as resp:
        assert resp.status == 200
    async with engine.browser.get(
        engine.url + "/v1/tools", headers={"Authorization": "Bearer wrong-key"}
    ) as resp:
        assert resp.status == 429 and (await resp.json())["error"] == "rate_limited"


async def test_audit_required_refuses_actions_when_the_file_cannot_be_written(
    keyturn_engine: Any, mini_provider: MiniProvider, tmp_path: Any
) -> None:
    """audit.required with the audit file's directory removed: actions answer 503 JSON and change nothing."""
    import shutil

    folder = tmp_path / "audit"
    folder.mkdir()
    extra = f"audit: {{sinks: [file], file: '{folder}/audit.log', required: true}}\n"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    body = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200
    async with engine.browser.get(auth["url"]) as resp:
        assert resp.status == 200
    grant = await engine.store.grants.find(USER, "acme")
    shutil.rmtree(folder)
    more = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["write"]}}}
    status, err = await engine.api("POST", "/v1/auth/authorize", json=more)
    assert status == 503 and err["error"] == "audit_unavailable" and "audit.required" in err["msg"]
    status, err = await engine.api("DELETE", f"/v1/admin/user_connections/{grant.id}")
    assert status == 503 and err["error"] == "audit_unavailable"
    assert (await engine.store.grants.get(grant.id)).status == "active" and mini_provider.revocations == []
    async with engine.store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 1
    assert (await engine.api("GET", "/v1/auth/status?id=" + auth["id"]))[0] == 200  # reads still work
    for callback in ("/v1/oauth/callback", "/api/oauth/callback"):  # a callback would store a grant
        async with engine.browser.get(engine.url + callback + "?state=s&code=c") as resp:
            assert resp.status == 503, callback
    folder.mkdir()
    assert (await engine.api("POST", "/v1/auth/authorize", json=more))[0] == 200


async def test_one_unreadable_grant_is_audited_counted_and_alone(
    keyturn_engine: Any, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grant whose token does not decrypt: the others refresh, it is listed, audited, counted, deletable."""
    engine = await keyturn_engine(acme_config(mini_provider, extra="lifecycle: {refresh_jitter: 0s}"))
    store = engine.store
    past = datetime.now(UTC) - timedelta(minutes=1)
    ids = []
    for i in range(3):
        refresh = mini_provider._token()
        mini_provider.valid_refresh.add(refresh)
        grant = await store.grants.upsert(
            f"user-{i}", "acme", access_token=mini_provider._token(), refresh_token=refresh, id_token=None,
            token_type="Bearer", expires_at=past, scopes=["read"], subject=None, user_info=None,
            token_metadata={}, next_refresh_at=past,
        )  # fmt: skip
        ids.append(grant.id)
    async with store.engine.begin() as conn:  # the second row gets the first row's sealed token
        await conn.execute(
            sa.text(
                "UPDATE grants SET access_token=(SELECT access_token FROM grants WHERE id=:a) WHERE id=:b"
            ),
            {"a": ids[0], "b": ids[1]},
        )
    capsys.readouterr()
    counts = await engine.app[REFRESHER].refresh_due()
    # due ids are taken without decrypting: the pass claims the unreadable grant too, reads it under its
    # lease, marks it unreadable and skips it; the next pass leaves it out
    assert counts == {"refreshed": 2, "skipped": 1}
    assert not (await engine.app[REFRESHER].refresh_due()).get("skipped")
    status, page = await engine.api("GET", "/v1/admin/user_connections")
    assert status == 200 and page["total_count"] == 3
    states = {item["user_id"]: item["connection_status"] for item in page["items"]}
    assert states == {"user-0": "active", "user-1": "unreadable", "user-2": "active"}
    out = capsys.readouterr().out
    audit = [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]
    unreadable = [a for a in audit if a["event"] == "grant.unreadable"]
    assert len(unreadable) == 1 and unreadable[0]["provider"] == "acme" and "user_ref" in unreadable[0]
    assert "user-1" not in out
    async with engine.browser.get(engine.url + "/metrics") as resp:
        text = await resp.text()
    assert 'keyturn_grants_unreadable_total{provider="acme"} 1.0' in text
    status, answer = await engine.api("DELETE", f"/v1/admin/user_connections/{ids[1]}")
    assert status == 200 and answer["outcome"] == "not_revoked_at_provider"
    assert answer["reason"] == "unreadable" and answer["deleted"] and "could not be read" in answer["msg"]
    assert await store.grants.get(ids[1]) is None
    assert (await store.grants.get(ids[0])).refreshed_at is not None


async def _full_disk_engine(
    keyturn_engine: Any, mini_provider: MiniProvider, tmp_path: Any, required: bool
) -> Any:
    """An engine whose audit file becomes /dev/full after start (a symlink, then reopen as on SIGHUP)."""
    from engine.wiring.services import AUDITOR

    path = tmp_path / "audit.log"
    extra = f"audit: {{sinks: [file], file: '{path}', required: {str(required).lower()}}}\n"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    path.unlink()
    path.symlink_to("/dev/full")
    engine.app[AUDITOR].reopen()
    return engine


async def test_audit_required_fails_the_request_whose_record_was_not_written(
    keyturn_engine: Any, mini_provider: MiniProvider, tmp_path: Any
) -> None:
    """audit.required, full disk (/dev/full): ready, but the batch write fails: the action is a 503."""
    engine = await _full_disk_engine(keyturn_engine, mini_provider, tmp_path, required=True)
    body = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    status, err = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 503 and err["error"] == "audit_unavailable" and "flow.started" in err["msg"]
    status, err = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 503 and err["error"] == "audit_unavailable"  # still failing: refused again


async def test_audit_not_required_answers_and_counts_the_failed_write(
    keyturn_engine: Any, mini_provider: MiniProvider, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """audit.required false with a full disk: the action succeeds; the failed write is logged and counted."""
    from engine.audit import FileSink
    from engine.wiring.services import AUDITOR

    engine = await _full_disk_engine(keyturn_engine, mini_provider, tmp_path, required=False)
    body = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200 and auth["status"] == "pending"
    await engine.app[AUDITOR].flush()
    [sink] = engine.app[AUDITOR].sinks
    assert isinstance(sink, FileSink) and sink.failed >= 1
    assert "audit_file_write_failed" in capsys.readouterr().out


def _route(app: Any, method: str, path: str) -> Any:
    return next(r for r in app.router.routes() if r.method == method and r.resource.canonical == path)


async def test_guards_are_chosen_per_route_at_startup(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """A fixed route gets exactly its steps once (/ping none, status the key, execute key and audit);
    routes with path parameters and the MCP endpoints decide on each request, as before."""
    from engine.api.guards import ROUTE_GUARDS

    engine = await keyturn_engine(acme_config(mini_provider))
    guards = engine.app[ROUTE_GUARDS]

    def chosen(method: str, path: str) -> str | None:
        guard = guards.by_route[id(_route(engine.app, method, path))]
        return None if guard is None else guard.__name__

    assert chosen("GET", "/ping") is None and chosen("GET", "/v1/health") is None
    assert chosen("GET", "/v1/auth/status") == "key_only"
    assert chosen("POST", "/v1/tools/execute") == "key_and_audit"
    assert chosen("GET", "/v1/oauth/callback") == "audit_only"  # a GET that stores a grant
    assert chosen("POST", "/mcp") == "per_request"
    assert chosen("DELETE", "/v1/admin/user_connections/{id}") == "per_request"
    assert chosen("GET", "/v1/orgs/{org}/projects/{project}/auth/status") == "per_request"


async def test_edge_answers_keep_ids_headers_and_error_shapes(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """Through the one edge middleware: request ids (a plain caller id kept), security headers on handler
    answers, 401 before 404 on an unknown /v1 path, 404 and 405 as JSON (with Allow), and metrics by route."""
    engine = await keyturn_engine(acme_config(mini_provider))
    async with engine.browser.get(engine.url + "/ping", headers={"X-Request-Id": "abc-123"}) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "abc-123"
        assert (
            resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["X-Frame-Options"] == "DENY"
        )
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    async with engine.browser.get(engine.url + "/ping", headers={"X-Request-Id": "no spaces!"}) as resp:
        assert len(resp.headers["X-Request-Id"]) == 16 and resp.headers["X-Request-Id"] != "no spaces!"
    async with engine.browser.get(engine.url + "/v1/nothing-here") as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="keyturn"' and resp.headers["X-Request-Id"]
    status, answer = await engine.api("GET", "/v1/nothing-here")
    assert status == 404 and answer["error"] == "not_found" and "/v1/nothing-here" in answer["msg"]
    async with engine.browser.delete(engine.url + "/ping") as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
        assert "GET" in resp.headers["Allow"] and resp.headers["X-Request-Id"]
    async with engine.browser.get(engine.url + "/v1/auth/status?id=gr_none") as resp:
        assert resp.status == 401
    status, answer = await engine.api("GET", "/v1/auth/status?id=gr_none")
    assert status == 404 and answer["error"] == "not_found"
    async with engine.browser.get(engine.url + "/metrics") as resp:
        text = await resp.text()
    assert 'keyturn_http_requests_total{method="GET",route="/ping",status="200"} 2.0' in text
    assert 'keyturn_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'keyturn_http_requests_total{method="GET",route="/v1/auth/status",status="401"} 1.0' in text
