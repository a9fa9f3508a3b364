"""engine.api.spec: declared inputs checked before handlers (400 naming the field), org-scoped paths."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from engine.api.spec import ValueCheck, _validator, unscoped
from engine.errors import BadRequest
from tests.plugins.keyturn_engine import API_KEY, KeyturnEngine
from tests.plugins.mini_provider import USER, MiniProvider, acme_config

ORG = "/v1/orgs/org_1/projects/prj_2"
SERVER = Path(__file__).resolve().parent.parent / "examples" / "arcade_mcp" / "server.py"
REQ = {"provider_id": "acme", "oauth2": {"scopes": ["read"]}}


@pytest.fixture
async def engine(keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any) -> KeyturnEngine:
    worker = await echo_worker(mini_provider.url("/userinfo"))
    return await keyturn_engine(acme_config(mini_provider, extra=worker.yaml()))


SECRETISH = "sk-live-do-not-echo-0123456789"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auth_requirement": REQ}, "body.user_id is required"),
        ({"user_id": USER}, "body.auth_requirement is required"),
        ({"user_id": 5, "auth_requirement": REQ}, "body.user_id must be a non-blank string"),
        ({"user_id": "   ", "auth_requirement": REQ}, "body.user_id must be a non-blank string"),
        ({"user_id": "a\x00b", "auth_requirement": REQ}, "body.user_id must be a non-blank string"),
        ({"user_id": "u" * 257, "auth_requirement": REQ}, "body.user_id must be a non-blank string"),
        ({"user_id": USER, "auth_requirement": SECRETISH}, "body.auth_requirement must be an object"),
        (
            {"user_id": USER, "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["a", 7]}}},
            "body.auth_requirement.oauth2.scopes[1] must be a non-blank string",
        ),
        (
            {"user_id": USER, "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["s"] * 101}}},
            "body.auth_requirement.oauth2.scopes has more than 100 items",
        ),
        (
            {"user_id": USER, "auth_requirement": {**REQ, "provider_type": "saml"}},
            "body.auth_requirement.provider_type is not supported (oauth2 or api_key)",
        ),
        ({"user_id": USER, "auth_requirement": REQ, "next_uri": 3}, "body.next_uri must be a string or null"),
    ],
)
async def test_body_checks_name_the_field(engine: KeyturnEngine, body: dict[str, Any], field: str) -> None:
    """A body that breaks its declared schema is 400 naming the field, never quoting the value."""
    status, answer = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 400 and answer["error"] == "invalid_request", answer
    assert answer["msg"].startswith(field), answer
    assert SECRETISH not in answer["msg"]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/tools", {"limit": "abc"}, "query parameter limit"),
        ("/v1/tools", {"limit": "²"}, "query parameter limit"),
        ("/v1/tools", {"offset": "-1"}, "query parameter offset"),
        ("/v1/tools", {"limit": "9" * 40}, "query parameter limit"),
        ("/v1/admin/user_connections", {"limit": "1.5"}, "query parameter limit"),
        ("/v1/formatted_tools", {"format": "xml"}, "query parameter format must be one of openai, anthropic"),
        ("/v1/auth/status", {}, "query parameter id is required"),
        ("/v1/auth/status", {"id": "x", "wait": "1_0"}, "query parameter wait"),
        ("/v1/tools", {"user_id": "a\x01"}, "query parameter user_id"),
    ],
)
async def test_query_checks_name_the_parameter(
    engine: KeyturnEngine, path: str, query: dict[str, str], field: str
) -> None:
    """A query parameter that is not what its declaration says is 400 naming it (no 500 for ², 1_0)."""
    status, answer = await engine.api("GET", path, params=query)
    assert status == 400, answer
    assert answer["msg"].startswith(field), answer


async def test_execute_and_tool_authorize_checks(engine: KeyturnEngine) -> None:
    """tools/execute and tools/authorize check their bodies the same way."""
    cases = [
        ("/v1/tools/execute", {"tool_name": "Echo.Say", "input": []}, "body.input must be an object or null"),
        (
            "/v1/tools/execute",
            {"tool_name": "Echo.Say", "run_at": "2030-01-01"},
            "body.run_at is not supported",
        ),
        ("/v1/tools/execute", {"input": {}}, "body.tool_name is required"),
        ("/v1/tools/authorize", {"tool_name": "Echo.WhoAmI"}, "body.user_id is required"),
        ("/v1/auth/confirm_user", {"flow_id": "", "user_id": "u"}, "body.flow_id must be a non-blank"),
    ]
    for path, body, field in cases:
        status, answer = await engine.api("POST", path, json=body)
        assert status == 400 and answer["msg"].startswith(field), (path, answer)
    status, answer = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {"text": "hi"}, "user_id": None}
    )
    assert status == 200 and answer["output"]["value"] == "hi", answer


def test_unscoped() -> None:
    """Only /v1/orgs/{org}/projects/{project}/X is read as /v1/X."""
    assert unscoped("/v1/orgs/o/projects/p/tools/execute") == "/v1/tools/execute"
    assert unscoped("/v1/orgs/o/projects/p/health") == "/v1/health"
    assert unscoped("/v1/tools") == "/v1/tools"
    assert unscoped("/v1/orgs/o/tools") == "/v1/orgs/o/tools"
    assert unscoped("/x/v1/orgs/o/projects/p/tools") == "/x/v1/orgs/o/projects/p/tools"


async def test_org_scoped_paths_answer_as_the_plain_ones(engine: KeyturnEngine) -> None:
    """/v1/orgs/{org}/projects/{project}/X is /v1/X: the same answers, the same API key check."""
    for path in ("/tools?limit=2", "/tools/Echo.Say", "/formatted_tools?format=anthropic", "/health"):
        plain = await engine.api("GET", "/v1" + path)
        scoped = await engine.api("GET", ORG + path)
        assert scoped == plain and plain[0] == 200, path
    body = {"user_id": "u-org", "auth_requirement": REQ}
    status, flow = await engine.api("POST", ORG + "/auth/authorize", json=body)
    assert status == 200 and flow["status"] == "pending"
    assert await engine.api("GET", ORG + "/auth/status", params={"id": flow["id"]}) == await engine.api(
        "GET", "/v1/auth/status", params={"id": flow["id"]}
    )
    status, bad = await engine.api("POST", ORG + "/auth/authorize", json={"user_id": "u"})
    assert (status, bad["msg"]) == (400, "body.auth_requirement is required")
    for path in ("/tools", "/admin/user_connections"):
        async with engine.browser.get(engine.url + ORG + path) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    async with engine.browser.get(engine.url + ORG + "/health") as resp:
        assert resp.status == 200  # public, as /v1/health
    async with engine.browser.get(engine.url + ORG + "/oauth/start/" + flow["id"]) as resp:
        assert resp.status in (401, 404)  # browser links are only what the engine hands out


async def test_arcade_mcp_server_with_an_arcade_login_context(
    keyturn_engine: Any, mini_provider: MiniProvider, tmp_path: Path
) -> None:
    """arcade-mcp-server on a machine with an `arcade login` context (and a key not starting arc_)
    sends org-scoped paths; Keyturn serves them: the flow link, sign-in, then the call with the token."""
    sec = "api_keys: ['test-api-key-0123456789abcdef'], token_exposure: api"
    engine = await keyturn_engine(acme_config(mini_provider, security=sec))
    work = tmp_path / "arcade"
    work.mkdir()
    context = {"org_id": "org_1", "org_name": "Org", "project_id": "prj_2", "project_name": "Project"}
    (work / "credentials.yaml").write_text(json.dumps({"cloud": {"context": context}}))
    env = {
        **os.environ,
        "ARCADE_WORK_DIR": str(work),
        "ARCADE_API_URL": engine.url,
        "ARCADE_API_KEY": API_KEY,
        "ARCADE_USER_ID": USER,
        "ACME_USERINFO_URL": mini_provider.url("/userinfo"),
    }
    errlog = tmp_path / "server.log"
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=env)
    with errlog.open("w") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            first = await session.call_tool("KeyturnExample_Whoami", {})
            text = first.content[0].text
            start = engine.url + "/v1/oauth/start/"
            assert start in text, text
            link = text[text.index(start) :].split()[0].rstrip(".,)\"'\\")
            async with engine.browser.get(link) as resp:
                assert resp.status == 200
            second = await session.call_tool("KeyturnExample_Whoami", {})
            assert not second.is_error, second
            assert json.loads(second.content[0].text)["sub"] == "u-123"
    assert "org-scoped Arcade client for org 'org_1' project 'prj_2'" in errlog.read_text()


def test_value_check_remembers_accepted_values_only() -> None:
    """A parameter value accepted once is not validated again; a refused one is refused every time,
    and a value of another type equal to an accepted one (1 and True) is checked on its own."""
    check = ValueCheck(_validator({"type": "integer", "maximum": 5}, {}))
    calls: list[Any] = []
    real = check.validator

    class Counted:
        def iter_errors(self, value: Any) -> Any:
            calls.append(value)
            return real.iter_errors(value)

    check.validator = Counted()  # type: ignore[assignment]
    check(1, "query parameter n")
    check(1, "query parameter n")
    assert calls == [1]
    for _ in range(2):
        with pytest.raises(BadRequest, match="query parameter n must be at most 5"):
            check(9, "query parameter n")
    with pytest.raises(BadRequest, match="query parameter n must be a whole number"):
        check(True, "query parameter n")
    assert calls == [1, 9, 9, True]
