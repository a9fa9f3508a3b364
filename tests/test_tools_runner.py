"""engine.tools: the tools API and the execute path against the reference worker (arcade-tdk)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from arcadepy import AsyncArcade

from engine.errors import ValidationFailed
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


@pytest.fixture
async def setup(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any
) -> tuple[Any, MiniProvider]:
    worker = await echo_worker(mini_provider.url("/userinfo"))
    extra = worker.yaml() + "tools: {secrets: {GREETING: hello-from-config}}\n"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    return engine, mini_provider


async def grant_via_flow(engine: Any, url: str) -> None:
    async with engine.browser.get(url) as resp:
        assert resp.status == 200


async def test_list_and_get_tools(setup: tuple[Any, MiniProvider]) -> None:
    """GET /v1/tools lists the worker's tools in arcadepy's shape; a tool is found by either name form."""
    engine, _ = setup
    status, page = await engine.api("GET", "/v1/tools?limit=10")
    assert status == 200 and page["total_count"] == 5
    names = {t["qualified_name"] for t in page["items"]}
    assert names == {"Echo.Say", "Echo.WhoAmI", "Echo.Ping", "Echo.Secret", "Echo.KeyInfo"}
    who = next(t for t in page["items"] if t["name"] == "WhoAmI")
    assert who["requirements"]["authorization"]["id"] == "acme"
    status, tool = await engine.api("GET", "/v1/tools/Echo_Say")
    assert status == 200 and tool["input"]["parameters"][0]["name"] == "text"
    status, err = await engine.api("GET", "/v1/tools/Echo.Nope")
    assert status == 404 and err["error"] == "unknown_tool"


async def test_formatted_tools(setup: tuple[Any, MiniProvider]) -> None:
    """formatted_tools gives OpenAI and Anthropic function schemas."""
    engine, _ = setup
    _, page = await engine.api("GET", "/v1/formatted_tools?format=openai")
    say = next(f for f in page["items"] if f["function"]["name"] == "Echo_Say")
    assert say["function"]["parameters"]["required"] == ["text"]
    _, one = await engine.api("GET", "/v1/formatted_tools/Echo.Say?format=anthropic")
    assert one["name"] == "Echo_Say" and one["input_schema"]["properties"]["text"]["type"] == "string"
    status, _ = await engine.api("GET", "/v1/formatted_tools?format=xml")
    assert status == 400


async def test_execute_without_auth(setup: tuple[Any, MiniProvider]) -> None:
    """A tool with no requirements runs and returns its value."""
    engine, _ = setup
    status, out = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {"text": "hi"}, "user_id": USER}
    )
    assert status == 200 and out["success"] is True and out["output"]["value"] == "hi"


async def test_input_validation(setup: tuple[Any, MiniProvider]) -> None:
    """Missing, mistyped or unknown parameters are a 400 naming the parameter."""
    engine, _ = setup
    status, err = await engine.api("POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {}})
    assert status == 400 and "'text' is a required property" in err["msg"]
    status, err = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {"text": 5}}
    )
    assert status == 400 and "input.text" in err["msg"]
    status, err = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {"text": "a", "loud": True}}
    )
    assert status == 400 and "parameters: text" in err["msg"]


async def test_execute_needs_authorization_then_succeeds(setup: tuple[Any, MiniProvider]) -> None:
    """No grant: success false with the pending authorization; after the flow, the worker gets the token."""
    engine, _ = setup
    body = {"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    status, out = await engine.api("POST", "/v1/tools/execute", json=body)
    assert status == 200 and out["success"] is False
    auth = out["output"]["authorization"]
    assert auth["status"] == "pending" and auth["url"].startswith(engine.url)
    await grant_via_flow(engine, auth["url"])
    status, out = await engine.api("POST", "/v1/tools/execute", json=body)
    assert out["success"] is True, out
    grant = await engine.store.grants.find(USER, "acme")
    value = out["output"]["value"]
    assert value["user_id"] == USER and value["sub"] == "u-123"
    assert value["token_sha256"] == hashlib.sha256(grant.access_token.encode()).hexdigest()[:16]
    assert grant.access_token not in str(out)


async def test_upstream_401_refreshes_once(setup: tuple[Any, MiniProvider]) -> None:
    """An upstream 401 makes the engine refresh the token once and retry the call."""
    engine, provider = setup
    _, auth = await engine.api(
        "POST", "/v1/tools/authorize", json={"tool_name": "Echo.WhoAmI", "user_id": USER}
    )
    await grant_via_flow(engine, auth["url"])
    before = await engine.store.grants.find(USER, "acme")
    provider.userinfo_status = 401
    provider.refresh_plan = ["rotate"]
    provider_refresh = provider._refresh

    async def refresh_and_heal(form: dict[str, Any]) -> Any:
        provider.userinfo_status = 200  # the first call is refused; after the refresh the retry succeeds
        return await provider_refresh(form)

    provider._refresh = refresh_and_heal  # type: ignore[method-assign]
    _, out = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    )
    assert out["success"] is True, out
    after = await engine.store.grants.find(USER, "acme")
    assert after.access_token != before.access_token and len(provider.refresh_calls) == 1


async def test_secrets(setup: tuple[Any, MiniProvider], keyturn_engine: Any, echo_worker: Any) -> None:
    """A tool's secret comes from tools.secrets; a missing one fails with TOOL_REQUIREMENTS_NOT_MET."""
    engine, provider = setup
    _, out = await engine.api("POST", "/v1/tools/execute", json={"tool_name": "Echo.Secret", "input": {}})
    assert out["success"] is True and out["output"]["value"] == "hello-from-config"
    worker = await echo_worker()
    bare = await keyturn_engine(acme_config(provider, extra=worker.yaml()))
    _, out = await bare.api("POST", "/v1/tools/execute", json={"tool_name": "Echo.Secret", "input": {}})
    assert out["success"] is False and out["output"]["error"]["kind"] == "TOOL_REQUIREMENTS_NOT_MET"


async def test_arcadepy_tools(setup: tuple[Any, MiniProvider]) -> None:
    """arcadepy's tools.list, tools.authorize and tools.execute work unchanged."""
    engine, _ = setup
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    try:
        page = await client.tools.list(toolkit="Echo")
        assert {t.name for t in page.items} == {"Say", "WhoAmI", "Ping", "Secret", "KeyInfo"}
        result = await client.tools.execute(tool_name="Echo.Say", input={"text": "yo"}, user_id=USER)
        assert result.success and result.output and result.output.value == "yo"
        pending = await client.tools.authorize(tool_name="Echo.WhoAmI", user_id=USER)
        assert pending.status == "pending" and pending.url
        needs = await client.tools.execute(tool_name="Echo.WhoAmI", input={}, user_id=USER)
        assert needs.success is False and needs.output and needs.output.authorization
        assert needs.output.authorization.url
    finally:
        await client.close()


async def test_worker_down(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """A worker that does not answer leaves an empty catalog and a clear 404 for its tools."""
    engine = await keyturn_engine(
        acme_config(mini_provider, extra="workers: [{id: gone, uri: 'http://127.0.0.1:1', secret: x}]\n")
    )
    status, page = await engine.api("GET", "/v1/tools")
    assert status == 200 and page["items"] == []
    status, _ = await engine.api("POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {}})
    assert status == 404


async def test_upstream_401_twice_asks_for_authorization(setup: tuple[Any, MiniProvider]) -> None:
    """A token refused again after one refresh marks the grant needs_reauth and answers with a new flow."""
    engine, provider = setup
    _, auth = await engine.api(
        "POST", "/v1/tools/authorize", json={"tool_name": "Echo.WhoAmI", "user_id": USER}
    )
    await grant_via_flow(engine, auth["url"])
    provider.userinfo_status = 401
    provider.refresh_plan = ["rotate"]
    status, out = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    )
    assert status == 200 and out["success"] is False, out
    pending = out["output"]["authorization"]
    assert pending["status"] == "pending" and pending["url"].startswith(engine.url)
    assert len(provider.refresh_calls) == 1
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.status == "needs_reauth" and grant.access_token not in str(out)


async def test_worker_down_during_execute(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any
) -> None:
    """A worker gone since the catalog was read gives success false, can_retry true, naming the worker."""
    worker = await echo_worker()
    engine = await keyturn_engine(acme_config(mini_provider, extra=worker.yaml("echo-w")))
    status, _ = await engine.api("GET", "/v1/tools/Echo.Say")
    assert status == 200
    worker.proc.terminate()
    await worker.proc.wait()
    status, out = await engine.api(
        "POST", "/v1/tools/execute", json={"tool_name": "Echo.Say", "input": {"text": "x"}, "user_id": USER}
    )
    assert status == 200 and out["success"] is False
    error = out["output"]["error"]
    assert error["can_retry"] is True and error["kind"] == "NETWORK_TRANSPORT_RUNTIME_UNREACHABLE"
    assert "echo-w" in error["message"] and error["retry_after_ms"] >= 1000
    assert worker.secret not in str(out)


async def test_null_optional_parameter_is_left_out() -> None:
    """An optional parameter sent as null (OpenAI strict mode) is validated and left out of the call."""
    from engine.tools.registry import Tool
    from engine.tools.runner import drop_null_optionals, validate_input

    params = [
        {"name": "q", "required": True, "value_schema": {"val_type": "string"}},
        {"name": "limit", "required": False, "value_schema": {"val_type": "integer"}},
    ]
    tool = Tool({"name": "Find", "toolkit": {"name": "Kit"}, "input": {"parameters": params}}, None)  # type: ignore[arg-type]
    validate_input(tool, {"q": "a", "limit": None})
    assert drop_null_optionals(tool, {"q": "a", "limit": None}) == {"q": "a"}
    with pytest.raises(ValidationFailed) as info:
        validate_input(tool, {"q": None})
    assert "input.q" in info.value.msg


async def test_auth_statuses_for_a_user(setup: tuple[Any, MiniProvider]) -> None:
    """Per user, an auth-requiring tool reads not_started, then completed after the flow; met follows."""
    from arcadepy.types import ToolDefinition

    from engine.tools.formats import to_arcade
    from engine.wiring.services import TOOLS

    engine, _ = setup
    runner = engine.app[TOOLS]
    tools = await runner.registry.all()
    statuses = await runner.auth_statuses(tools, USER)
    assert statuses["Echo.WhoAmI"] == {"status": "active", "token_status": "not_started"}
    assert "Echo.Say" not in statuses
    who = next(t for t in tools if t.name == "Echo.WhoAmI")
    say = next(t for t in tools if t.name == "Echo.Say")
    parsed = ToolDefinition.model_validate(
        to_arcade(who.definition, secrets_present=set(), auth_status=statuses[who.name])
    )
    assert parsed.requirements and parsed.requirements.met is False
    authorization = parsed.requirements.authorization
    assert authorization and authorization.token_status == "not_started"
    assert to_arcade(say.definition, secrets_present=set())["requirements"]["met"] is True
    _, auth = await engine.api(
        "POST", "/v1/tools/authorize", json={"tool_name": "Echo.WhoAmI", "user_id": USER}
    )
    await grant_via_flow(engine, auth["url"])
    statuses = await runner.auth_statuses(tools, USER)
    assert statuses["Echo.WhoAmI"]["token_status"] == "completed"
    assert (await runner.auth_statuses(tools, "someone-else"))["Echo.WhoAmI"]["token_status"] == "not_started"
    out = to_arcade(who.definition, secrets_present=set(), auth_status=statuses[who.name])
    assert out["requirements"]["met"] is True and out["requirements"]["authorization"]["id"] == "acme"


async def test_repeated_execute_and_authorize_share_one_flow(setup: tuple[Any, MiniProvider]) -> None:
    """Executing (and tools/authorize) again before the user authorizes hands out one flow, no 429."""
    engine, _ = setup
    body = {"tool_name": "Echo.WhoAmI", "input": {}, "user_id": USER}
    seen = set()
    for _ in range(8):
        status, out = await engine.api("POST", "/v1/tools/execute", json=body)
        assert status == 200 and out["success"] is False
        seen.add((out["output"]["authorization"]["id"], out["output"]["authorization"]["url"]))
    for _ in range(3):
        status, auth = await engine.api(
            "POST", "/v1/tools/authorize", json={"tool_name": "Echo.WhoAmI", "user_id": USER}
        )
        assert status == 200
        seen.add((auth["id"], auth["url"]))
    assert len(seen) == 1
