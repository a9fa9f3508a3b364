"""engine.mcp.authserver (and its routes) against a whole engine: SECURITY.md 35-36, each refusal."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.plugins.mcp_oauth import authorize_in_browser, query
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e

REDIRECT = "http://127.0.0.1:41234/cb"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def register(engine: Any) -> str:
    body = {
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "client_name": "Test <b>app</b>",
        "grant_types": ["authorization_code", "refresh_token"],
    }
    status, client = await engine.api("POST", "/oauth2/register", json=body)
    assert status == 201 and "client_secret" not in client, client
    return str(client["client_id"])


def authorize_url(engine: Any, client_id: str, challenge: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st4te",
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": engine.url + "/mcp",
              "scope": "mcp:tools", **extra}  # fmt: skip
    return f"{engine.url}/oauth2/authorize?{urlencode({k: v for k, v in params.items() if v})}"


async def get_code(engine: Any, browser: Any, client_id: str, **extra: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    answer = await authorize_in_browser(engine, browser, authorize_url(engine, client_id, challenge, **extra))
    params = query(answer)
    assert answer.startswith(REDIRECT) and params["iss"] == engine.url and params["state"] == "st4te", answer
    return params["code"], verifier


async def token(engine: Any, **form: str) -> tuple[int, dict[str, Any]]:
    status, body = await engine.api("POST", "/oauth2/token", data=form, headers={"Authorization": ""})
    for key in ("access_token", "refresh_token"):
        if isinstance(body, dict) and key in body:
            remember(body[key])
    return status, body


async def exchange(engine: Any, client_id: str, code: str, verifier: str) -> tuple[int, dict[str, Any]]:
    return await token(engine, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                       client_id=client_id, code_verifier=verifier)  # fmt: skip


async def tokens(engine: Any, **extra: str) -> tuple[str, dict[str, Any]]:
    client_id = await register(engine)
    code, verifier = await get_code(engine, engine.new_browser(), client_id, **extra)
    status, body = await exchange(engine, client_id, code, verifier)
    assert status == 200, body
    return client_id, body


async def mcp(engine: Any, access_token: str, path: str = "/mcp", **headers: str) -> tuple[int, Any, Any]:
    hdrs = {
        "Authorization": f"Bearer {access_token}",
        "Accept": "application/json, text/event-stream",
        **headers,
    }
    async with engine.browser.post(engine.url + path, json=INIT, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_metadata_and_the_401_challenge(oauth_engine: Any) -> None:
    """401 names the resource metadata and the scope; RFC 9728 and RFC 8414 documents say S256, iss, CIMD."""
    engine = await oauth_engine()
    async with engine.browser.post(engine.url + "/mcp", json=INIT) as resp:
        assert resp.status == 401
        challenge = resp.headers["WWW-Authenticate"]
        refusal = await resp.json()
    assert (
        refusal["jsonrpc"] == "2.0" and refusal["error"]["data"]["error"] == "unauthorized"
    )  # as every /mcp error
    prm_url = engine.url + "/.well-known/oauth-protected-resource/mcp"
    assert challenge == f'Bearer resource_metadata="{prm_url}", scope="mcp:tools"'
    async with engine.browser.get(prm_url) as resp:
        prm = await resp.json()
    assert prm["resource"] == engine.url + "/mcp" and prm["authorization_servers"] == [engine.url]
    assert prm["scopes_supported"] == ["mcp:tools"] and prm["bearer_methods_supported"] == ["header"]
    async with engine.browser.get(engine.url + "/.well-known/oauth-authorization-server") as resp:
        meta = await resp.json()
    assert meta["issuer"] == engine.url and meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["registration_endpoint"] == engine.url + "/oauth2/register"
    assert "implicit" not in str(meta) and "password" not in str(meta)


async def test_a_token_acts_for_its_user_and_refuses_a_user_header(oauth_engine: Any) -> None:
    """A valid token opens /mcp as its user; Keyturn-User-Id beside it is refused (400)."""
    engine = await oauth_engine()
    _, body = await tokens(engine)
    status, answer, _ = await mcp(engine, body["access_token"])
    assert status == 200 and answer["result"]["serverInfo"]["name"] == "keyturn"
    assert body["token_type"].lower() == "bearer" and 0 < body["expires_in"] <= 900
    status, answer, _ = await mcp(engine, body["access_token"], **{"Keyturn-User-Id": "mallory@example.test"})
    assert status == 400 and answer["error"]["data"]["error"] == "user_header_refused"
    async with engine.store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT token_hash, user_id FROM mcp_tokens"))).all()
    assert {r.user_id for r in rows} == {"alice@example.test"}
    assert body["access_token"] not in str(rows) and hashlib.sha256(
        body["access_token"].encode()
    ).hexdigest() in str(rows)


async def test_a_token_for_another_resource_is_refused(oauth_engine: Any) -> None:
    """A token minted for the gateway /mcp/mail is refused at /mcp, and the other way round."""
    engine = await oauth_engine(mcp="  gateways: [{slug: mail, tools: ['Echo.Say']}]")
    _, body = await tokens(engine, resource=engine.url + "/mcp/mail")
    status, _, headers = await mcp(engine, body["access_token"])
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert (await mcp(engine, body["access_token"], "/mcp/mail"))[0] == 200
    _, main = await tokens(engine)
    assert (await mcp(engine, main["access_token"], "/mcp/mail"))[0] == 401


async def test_a_resource_that_is_not_this_server_is_refused(oauth_engine: Any) -> None:
    """resource=https://elsewhere.example/mcp: invalid_target back to the client, with iss; no code."""
    engine = await oauth_engine()
    client_id = await register(engine)
    _, challenge = pkce()
    url = authorize_url(engine, client_id, challenge, resource="https://elsewhere.example/mcp")
    answer = await authorize_in_browser(engine, engine.new_browser(), url)
    params = query(answer)
    assert params["error"] == "invalid_target" and params["iss"] == engine.url and "code" not in params


async def test_an_authorization_without_resource_is_refused(oauth_engine: Any) -> None:
    """No resource (MCP clients MUST send it): invalid_target back to the client, with iss; no code."""
    engine = await oauth_engine()
    client_id = await register(engine)
    _, challenge = pkce()
    url = authorize_url(engine, client_id, challenge, resource="")
    assert "resource=" not in url
    answer = await authorize_in_browser(engine, engine.new_browser(), url)
    params = query(answer)
    assert params["error"] == "invalid_target" and params["iss"] == engine.url and "code" not in params
    assert "resource is required" in params["error_description"]


async def test_an_expired_token_is_refused(oauth_engine: Any) -> None:
    """An access token past its expiry answers 401 invalid_token."""
    engine = await oauth_engine()
    _, body = await tokens(engine)
    async with engine.store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE mcp_tokens SET expires_at = '2000-01-01 00:00:00' WHERE kind = 'access'")
        )
    status, _, headers = await mcp(engine, body["access_token"])
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]


async def test_a_reused_refresh_token_revokes_its_family(oauth_engine: Any) -> None:
    """Rotation: a refresh gives a new pair; the old refresh token again: invalid_grant, all tokens end."""
    engine = await oauth_engine()
    client_id, first = await tokens(engine)
    status, second = await token(engine, grant_type="refresh_token", refresh_token=first["refresh_token"],
                                 client_id=client_id)  # fmt: skip
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert (await mcp(engine, second["access_token"]))[0] == 200
    status, reused = await token(engine, grant_type="refresh_token", refresh_token=first["refresh_token"],
                                 client_id=client_id)  # fmt: skip
    assert status == 400 and reused["error"] == "invalid_grant"
    assert (await mcp(engine, second["access_token"]))[0] == 401  # the family is revoked
    status, after = await token(engine, grant_type="refresh_token", refresh_token=second["refresh_token"],
                                client_id=client_id)  # fmt: skip
    assert status == 400 and after["error"] == "invalid_grant"


async def test_a_replayed_code_is_refused_and_revokes_its_tokens(oauth_engine: Any) -> None:
    """A code exchanged twice: the second gets invalid_grant and the first exchange's tokens end."""
    engine = await oauth_engine()
    client_id = await register(engine)
    code, verifier = await get_code(engine, engine.new_browser(), client_id)
    status, body = await exchange(engine, client_id, code, verifier)
    assert status == 200
    status, again = await exchange(engine, client_id, code, verifier)
    assert status == 400 and again["error"] == "invalid_grant"
    assert (await mcp(engine, body["access_token"]))[0] == 401


async def test_pkce_is_required_s256_only_and_checked(oauth_engine: Any) -> None:
    """No code_challenge or method plain: refused at /authorize; a wrong verifier: invalid_grant."""
    engine = await oauth_engine()
    client_id = await register(engine)
    browser = engine.new_browser()
    for extra in ({"code_challenge": ""}, {"code_challenge_method": "plain"}):
        _, challenge = pkce()
        url = authorize_url(engine, client_id, challenge, **extra)
        params = query(await authorize_in_browser(engine, browser, url))
        assert params["error"] == "invalid_request" and "code" not in params, params
    code, _ = await get_code(engine, browser, client_id)
    status, body = await exchange(engine, client_id, code, pkce()[0])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_a_redirect_uri_not_registered_gets_a_page_not_a_redirect(oauth_engine: Any) -> None:
    """An unregistered redirect_uri is never redirected to: 400 page."""
    engine = await oauth_engine()
    client_id = await register(engine)
    _, challenge = pkce()
    url = authorize_url(engine, client_id, challenge, redirect_uri="https://evil.example/cb")
    async with engine.new_browser().get(url, allow_redirects=False) as resp:
        assert resp.status == 400 and "Location" not in resp.headers
        assert "not supported" in await resp.text()


async def test_consent_names_the_client_csrf_deny_and_remember(oauth_engine: Any) -> None:
    """The page escapes the client's name and names the redirect host; no CSRF: 403; deny: access_denied;
    a remembered consent skips the page next time."""
    engine = await oauth_engine()
    client_id = await register(engine)
    browser = engine.new_browser()
    _, challenge = pkce()
    pages: list[str] = []
    denied = await authorize_in_browser(engine, browser, authorize_url(engine, client_id, challenge),
                                        decision="deny", pages=pages)  # fmt: skip
    assert query(denied)["error"] == "access_denied" and query(denied)["iss"] == engine.url
    assert "Test &lt;b&gt;app&lt;/b&gt;" in pages[0] and "<b>127.0.0.1</b>" in pages[0]
    forged = {"client_id": client_id, "decision": "allow"}
    async with browser.post(engine.url + "/oauth2/authorize", data=forged, allow_redirects=False) as resp:
        assert resp.status == 403
    pages.clear()
    await authorize_in_browser(
        engine, browser, authorize_url(engine, client_id, challenge), remember=True, pages=pages
    )
    assert len(pages) == 1
    answer = await authorize_in_browser(
        engine, browser, authorize_url(engine, client_id, challenge), pages=pages
    )
    assert len(pages) == 1 and "code" in query(answer)  # no second consent page


async def test_revocation_ends_a_token(oauth_engine: Any) -> None:
    """RFC 7009: a revoked access token is refused at once; revoking the refresh token ends the family."""
    engine = await oauth_engine()
    client_id, body = await tokens(engine)
    status, _ = await engine.api(
        "POST", "/oauth2/revoke", data={"token": body["access_token"], "client_id": client_id}
    )
    assert status == 200 and (await mcp(engine, body["access_token"]))[0] == 401
    status, _ = await engine.api(
        "POST", "/oauth2/revoke", data={"token": body["refresh_token"], "client_id": client_id}
    )
    status, after = await token(engine, grant_type="refresh_token", refresh_token=body["refresh_token"],
                                client_id=client_id)  # fmt: skip
    assert status == 400 and after["error"] == "invalid_grant"


async def test_registration_off_is_refused_but_listed_clients_work(oauth_engine: Any) -> None:
    """registration: off -> 404 and no registration_endpoint; a client listed in config still signs in."""
    engine = await oauth_engine(
        mcp=f"  oauth: {{registration: 'off', clients: [{{client_id: cli, redirect_uris: ['{REDIRECT}']}}]}}"
    )
    status, _ = await engine.api("POST", "/oauth2/register", json={"redirect_uris": [REDIRECT]})
    assert status == 404
    _, meta = await engine.api("GET", "/.well-known/oauth-authorization-server")
    assert "registration_endpoint" not in meta
    code, verifier = await get_code(engine, engine.new_browser(), "cli")
    status, body = await exchange(engine, "cli", code, verifier)
    assert status == 200 and (await mcp(engine, body["access_token"]))[0] == 200


NO_USER = {"mcp_oauth.client_registered", "mcp_oauth.token_refused"}


async def test_its_events_are_audited_and_counted(oauth_engine: Any, capsys: Any) -> None:
    """Registered, consent denied/given (remembered), issued, refused, code and refresh reuse, revoked: an
    audit line each (no token, code, verifier or client secret in any) and keyturn_mcp_oauth_events."""
    engine = await oauth_engine()
    capsys.readouterr()
    client_id = await register(engine)
    browser = engine.new_browser()
    verifier, challenge = pkce()
    denied = await authorize_in_browser(engine, browser, authorize_url(engine, client_id, challenge),
                                        decision="deny")  # fmt: skip
    assert query(denied)["error"] == "access_denied"
    answer = await authorize_in_browser(engine, browser, authorize_url(engine, client_id, challenge),
                                        remember=True)  # fmt: skip
    code = query(answer)["code"]
    status, first = await exchange(engine, client_id, code, verifier)
    assert status == 200
    assert (await exchange(engine, client_id, code, verifier))[0] == 400  # the code replayed
    second_code, second_verifier = await get_code(engine, browser, client_id)  # remembered: no page
    _, pair = await exchange(engine, client_id, second_code, second_verifier)
    _, rotated = await token(engine, grant_type="refresh_token", refresh_token=pair["refresh_token"],
                             client_id=client_id)  # fmt: skip
    status, _ = await token(engine, grant_type="refresh_token", refresh_token=pair["refresh_token"],
                            client_id=client_id)  # fmt: skip
    assert status == 400  # the old refresh token again: its family is revoked
    status, _ = await engine.api("POST", "/oauth2/revoke", data={"token": first["refresh_token"],
                                                                 "client_id": client_id})  # fmt: skip
    assert status == 200
    status, confidential = await engine.api("POST", "/oauth2/register", json={
        "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"})  # fmt: skip
    secret = confidential["client_secret"]
    status, _ = await token(engine, grant_type="authorization_code", code="nope", redirect_uri=REDIRECT,
                            client_id=confidential["client_id"], client_secret=secret + "x")  # fmt: skip
    assert status == 401
    out = capsys.readouterr().out
    audit = [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]
    seen = [(a["event"], a["outcome"], a.get("reason")) for a in audit if a["event"].startswith("mcp_oauth.")]
    assert seen == [
        ("mcp_oauth.client_registered", "success", None),
        ("mcp_oauth.consent_denied", "denied", None),
        ("mcp_oauth.consent_given", "success", None),
        ("mcp_oauth.token_issued", "success", None),
        ("mcp_oauth.reuse_detected", "denied", "code"),
        ("mcp_oauth.token_refused", "denied", "invalid_grant"),
        ("mcp_oauth.consent_given", "success", None),
        ("mcp_oauth.token_issued", "success", None),
        ("mcp_oauth.token_issued", "success", None),
        ("mcp_oauth.reuse_detected", "denied", "refresh_token"),
        ("mcp_oauth.token_refused", "denied", "invalid_grant"),
        ("mcp_oauth.token_revoked", "success", "refresh_token"),
        ("mcp_oauth.client_registered", "success", None),
        ("mcp_oauth.token_refused", "denied", "invalid_client"),
    ], seen
    issued = [a for a in audit if a["event"] == "mcp_oauth.token_issued"]
    assert [a["grant_type"] for a in issued] == ["authorization_code", "authorization_code", "refresh_token"]
    assert all(a["client_id"] == client_id and a["resource"] == engine.url + "/mcp" for a in issued)
    personal = [a for a in audit if a["event"].startswith("mcp_oauth.") and a["event"] not in NO_USER]
    assert len(personal) == 9 and all("user_ref" in a and "user_id" not in a for a in personal)
    assert [a.get("remembered") for a in audit if a["event"] == "mcp_oauth.consent_given"] == [True, True]
    secrets_seen = [code, second_code, verifier, second_verifier, secret, first["access_token"]]
    secrets_seen += [first["refresh_token"], pair["refresh_token"], rotated["access_token"], "alice@example"]
    assert not [value for value in secrets_seen if value in out]
    async with engine.browser.get(engine.url + "/metrics") as resp:
        metrics = await resp.text()
    for line in ('event="token_issued",outcome="success",reason="none"} 3.0',
                 'event="token_refused",outcome="denied",reason="invalid_grant"} 2.0',
                 'event="reuse_detected",outcome="denied",reason="refresh_token"} 1.0',
                 'event="consent_denied",outcome="denied",reason="none"} 1.0'):  # fmt: skip
        assert "keyturn_mcp_oauth_events_total{" + line in metrics, metrics


async def test_cors_preflight_for_browser_clients(oauth_engine: Any) -> None:
    """OPTIONS on the metadata, token, register and revoke routes: 204 with methods and the headers a
    browser MCP client sends (Authorization, Content-Type, MCP-Protocol-Version); no API key needed."""
    engine = await oauth_engine(mcp="  gateways: [{slug: mail, tools: ['Echo.Say']}]")
    wanted = "authorization, content-type, mcp-protocol-version"
    asks = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": wanted}  # fmt: skip
    for path, method in (("/.well-known/oauth-authorization-server", "GET"),
                         ("/.well-known/oauth-protected-resource/mcp", "GET"),
                         ("/.well-known/oauth-protected-resource/mcp/mail", "GET"),
                         ("/oauth2/token", "POST"), ("/oauth2/register", "POST"),
                         ("/oauth2/revoke", "POST")):  # fmt: skip
        async with engine.browser.options(engine.url + path, headers=asks) as resp:
            assert resp.status == 204, (path, resp.status, await resp.text())
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert method in resp.headers["Access-Control-Allow-Methods"].split(", ")
            allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "content-type", "mcp-protocol-version"} <= allowed
    async with engine.browser.options(engine.url + "/.well-known/oauth-protected-resource/mcp/nope") as resp:
        assert resp.status == 404  # no such gateway: nothing to preflight


async def test_no_preflight_while_registration_is_off(oauth_engine: Any) -> None:
    """registration: off -> OPTIONS /oauth2/register is 404 like its POST; the token route still answers."""
    engine = await oauth_engine(mcp="  oauth: {registration: 'off'}")
    async with engine.browser.options(engine.url + "/oauth2/register") as resp:
        assert resp.status == 404
    async with engine.browser.options(engine.url + "/oauth2/token") as resp:
        assert resp.status == 204


async def test_consent_behind_a_path_prefixed_public_url(oauth_engine: Any, prefix_proxy: Any) -> None:
    """With api.public_url under a path served by a proxy (/keyturn), sign-in and the consent form stay under
    it: the consent posts to /keyturn/oauth2/authorize and the client gets its code with iss = public_url."""
    import dataclasses
    from urllib.parse import urljoin

    import aiohttp

    from engine.wiring.settings import SETTINGS
    from tests.plugins.mcp_oauth import hidden_fields
    from tests.plugins.oidc import follow_login

    engine = await oauth_engine()
    client_id = await register(engine)
    proxy = await prefix_proxy(engine.url, "/keyturn")
    holder = engine.app[SETTINGS]
    api = dataclasses.replace(holder.current.config.api, public_url=proxy.url)
    await holder.swap(
        dataclasses.replace(holder.current, config=dataclasses.replace(holder.current.config, api=api))
    )
    _, challenge = pkce()
    url = authorize_url(engine, client_id, challenge, resource=proxy.url + "/mcp")
    url = proxy.url + url[len(engine.url) :]
    origin = proxy.url[: -len("/keyturn")]
    consent = ""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[origin])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        for _ in range(12):
            if not url.startswith(proxy.url + "/"):  # at the provider: sign in there
                url = await follow_login(browser, url, account="alice")
                continue
            async with browser.get(url, allow_redirects=False) as resp:
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                consent = await resp.text()
                break
        assert 'action="/keyturn/oauth2/authorize"' in consent, consent[:800]
        form = {**hidden_fields(consent), "decision": "allow"}
        target = origin + "/keyturn/oauth2/authorize"
        async with browser.post(target, data=form, allow_redirects=False) as resp:
            assert resp.status in (302, 303), await resp.text()
            answer = resp.headers["Location"]
    assert answer.startswith(REDIRECT) and query(answer)["iss"] == proxy.url and query(answer)["code"]
    assert proxy.outside == []
