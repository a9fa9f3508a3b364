"""engine.tools.worker: the worker JWT and the worker protocol client against the reference worker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from arcade_serve.core.auth import validate_engine_token

from engine.errors import ProviderError, Unavailable
from engine.tools.worker import TOKEN_TTL, WorkerClient, worker_token


@pytest.fixture
async def tools_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def test_worker_token_claims() -> None:
    """The token is HS256 with aud "worker", ver "1" and an expiry of at most a few minutes."""
    token = worker_token("s3cret-worker-key-0123456789abcdef")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, "s3cret-worker-key-0123456789abcdef", algorithms=["HS256"], audience="worker")
    assert claims["ver"] == "1"
    assert 0 < claims["exp"] - time.time() <= TOKEN_TTL + 1 and TOKEN_TTL <= 300


def test_worker_token_checked_by_arcade_serve() -> None:
    """arcade-serve's own check accepts the token with the right secret and refuses it with another."""
    token = worker_token("the-worker-secret-0123456789abcdef")
    assert validate_engine_token("the-worker-secret-0123456789abcdef", token).valid
    assert not validate_engine_token("another-secret-0123456789abcdefgh", token).valid
    expired = worker_token("the-worker-secret-0123456789abcdef", now=time.time() - 3600)
    assert not validate_engine_token("the-worker-secret-0123456789abcdef", expired).valid


async def test_list_invoke_health(echo_worker: Any, tools_session: aiohttp.ClientSession) -> None:
    """The client lists the worker's ToolDefinitions, invokes a tool and sees the worker healthy."""
    worker = await echo_worker()
    client = WorkerClient(tools_session, "echo", worker.url, worker.secret, 10)
    tools = await client.list_tools()
    by_name = {t["name"]: t for t in tools}
    assert {"Say", "WhoAmI", "Secret"} <= set(by_name)  # the bench adds tools of its own
    assert by_name["Say"]["toolkit"]["name"] == "Echo"
    auth = by_name["WhoAmI"]["requirements"]["authorization"]
    assert auth["id"] == "acme" and auth["provider_type"] == "oauth2"
    assert auth["oauth2"]["scopes"] == ["email"]
    answer = await client.invoke(
        {
            "execution_id": "ex_1",
            "tool": {"name": "Say", "toolkit": "Echo"},
            "inputs": {"text": "hello"},
            "context": {"user_id": "u1"},
        }
    )
    assert answer["success"] is True and answer["output"]["value"] == "hello"
    assert await client.health() is True


async def test_wrong_secret_names_the_worker(echo_worker: Any, tools_session: aiohttp.ClientSession) -> None:
    """A worker refusing the JWT gives a worker_auth error naming the worker, never the secret."""
    worker = await echo_worker()
    wrong = "not-the-right-secret-0123456789"
    client = WorkerClient(tools_session, "echo-a", worker.url, wrong, 10)
    with pytest.raises(ProviderError) as info:
        await client.list_tools()
    assert info.value.kind == "worker_auth"
    assert "echo-a" in info.value.msg and "workers[].secret" in info.value.msg
    assert wrong not in str(info.value) and worker.secret not in str(info.value)
    assert await client.health() is True  # arcade-serve's /worker/health is open: it says "reachable" only


async def test_worker_down_is_unavailable(tools_session: aiohttp.ClientSession) -> None:
    """A worker nobody listens for is Unavailable with a retry hint and its id in the message."""
    client = WorkerClient(tools_session, "gone", "http://127.0.0.1:1", "secret-value-xyz", 5)
    with pytest.raises(Unavailable) as info:
        await client.list_tools()
    assert "gone" in info.value.msg and "secret-value-xyz" not in str(info.value)
    assert await client.health() is False


async def test_non_json_and_http_errors(aiohttp_server: Any, tools_session: aiohttp.ClientSession) -> None:
    """A worker answering HTML or a 500 is a ProviderError saying which worker and which path."""
    from aiohttp import web

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def boom(_: web.Request) -> web.Response:
        return web.Response(status=500, text="oops")

    app = web.Application()
    app.router.add_get("/worker/tools", html)
    app.router.add_post("/worker/tools/invoke", boom)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    client = WorkerClient(tools_session, "odd", str(server.make_url("")), "s", 5)
    with pytest.raises(ProviderError) as info:
        await client.list_tools()
    assert "odd" in info.value.msg and "/worker/tools" in info.value.msg
    with pytest.raises(ProviderError) as info:
        await client.invoke({})
    assert info.value.retryable and "HTTP 500" in info.value.msg


async def test_hostile_json_answer_is_a_provider_error(
    aiohttp_server: Any, tools_session: aiohttp.ClientSession
) -> None:
    """A worker answering JSON nested 100,000 deep is a ProviderError naming the worker, not a crash."""
    from aiohttp import web

    async def deep(_: web.Request) -> web.Response:
        return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")

    app = web.Application()
    app.router.add_get("/worker/tools", deep)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    client = WorkerClient(tools_session, "deep", str(server.make_url("")), "s", 5)
    with pytest.raises(ProviderError) as info:
        await client.list_tools()
    assert "deep" in info.value.msg and "did not answer JSON" in info.value.msg


async def test_large_tool_result_is_read_whole(
    echo_worker: Any, tools_session: aiohttp.ClientSession
) -> None:
    """A 300 KB tool result from the reference worker comes back whole, not cut at the read buffer."""
    worker = await echo_worker()
    client = WorkerClient(tools_session, "echo", worker.url, worker.secret, 10)
    text = "abcdefghij" * 30_000
    answer = await client.invoke(
        {"execution_id": "ex_big", "tool": {"name": "Say", "toolkit": "Echo"}, "inputs": {"text": text}}
    )
    assert answer["success"] is True and answer["output"]["value"] == text


@pytest.mark.parametrize("chunked", [False, True])
async def test_answer_past_the_cap_names_the_limit(
    aiohttp_server: Any, tools_session: aiohttp.ClientSession, chunked: bool
) -> None:
    """A worker answer over 8 MiB is a worker_error naming the worker, the path and the limit."""
    from aiohttp import web

    from engine.tools.worker import MAX_ANSWER_BYTES

    async def huge(request: web.Request) -> web.StreamResponse:
        body = b"[" + b" " * MAX_ANSWER_BYTES + b"]"
        if not chunked:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(body), 1 << 20):
            await resp.write(body[start : start + (1 << 20)])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/worker/tools", huge)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    client = WorkerClient(tools_session, "big", str(server.make_url("")), "s", 10)
    with pytest.raises(ProviderError) as info:
        await client.list_tools()
    assert info.value.kind == "worker_error"
    assert info.value.msg == "worker big: the answer to /worker/tools is larger than the limit of 8 MiB"
