"""engine.mcp.server: /mcp over a small test backend, with the official MCP client and raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

from engine.api.auth import api_key_middleware, needs_api_key_or_mcp
from engine.api.middleware import error_middleware, request_id_middleware
from engine.errors import Unavailable
from engine.ratelimit import SlidingWindowLimiter
from tests.plugins.mcp_backend import LINK, Serve

KEY = "mcp-test-key"


@contextlib.asynccontextmanager
async def client(
    url: str, *, headers: dict[str, str] | None = None, elicit: Any = None, messages: list[Any] | None = None
) -> AsyncIterator[ClientSession]:
    async def on_message(message: Any) -> None:
        if messages is not None:
            messages.append(message)

    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=30) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        yield session


async def test_initialize_list_call_ping(mcp_serve: Serve) -> None:
    """The official client initializes (2025-11-25), lists tools, calls one, pings; unknown tool -32602."""
    url, _ = await mcp_serve()
    async with client(url) as session:
        init = await session.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "keyturn" and init.server_info.version == "9.9"
        tools = await session.list_tools()
        assert [t.name for t in tools.tools] == ["echo", "whoami"]
        assert tools.tools[0].input_schema["required"] == ["text"]
        result = await session.call_tool("echo", {"text": "over mcp"})
        assert not result.is_error and result.content[0].text == "over mcp"
        await session.send_ping()
        with pytest.raises(MCPError) as info:
            await session.call_tool("nope", {})
        assert info.value.code == -32602


async def test_url_elicitation_then_complete_then_retry(mcp_serve: Serve) -> None:
    """URL elicitation: -32042 (mode url, the link), elicitation/complete after the flow, retry works."""
    url, backend = await mcp_serve()
    messages: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    def completes() -> list[Any]:
        return [m for m in messages if isinstance(m, types.ElicitCompleteNotification)]

    async with client(url, elicit=elicit, messages=messages) as session:
        await session.initialize()
        with pytest.raises(MCPError) as info:
            await session.call_tool("whoami", {})
        assert info.value.code == -32042
        seen = UrlElicitationRequiredError.from_error(info.value.error).elicitations
        assert [(e.mode, e.url) for e in seen] == [("url", LINK)]
        elicitation_id = seen[0].elicitation_id
        assert elicitation_id and seen[0].message.startswith("Authorize access to acme")
        for _ in range(200):  # the server is waiting on the flow before it completes
            if backend.waits:
                break
            await asyncio.sleep(0.02)
        assert backend.waits and not completes()
        backend.complete()
        for _ in range(500):
            if completes():
                break
            await asyncio.sleep(0.02)
        assert [m.params.elicitation_id for m in completes()] == [elicitation_id]
        result = await session.call_tool("whoami", {})
        assert not result.is_error and result.content[0].text == "you are alice"


async def _elicited(session: ClientSession) -> str:
    with pytest.raises(MCPError) as info:
        await session.call_tool("whoami", {})
    assert info.value.code == -32042
    elicitation_id = UrlElicitationRequiredError.from_error(info.value.error).elicitations[0].elicitation_id
    assert elicitation_id
    return elicitation_id


async def _completed(messages: list[Any], elicitation_id: str) -> None:
    for _ in range(500):
        if any(
            isinstance(m, types.ElicitCompleteNotification) and m.params.elicitation_id == elicitation_id
            for m in messages
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no elicitation/complete for {elicitation_id}: {messages}")


async def test_failed_flow_still_completes_the_elicitation_and_the_retry_says_why(mcp_serve: Serve) -> None:
    """A failed flow's elicitation is completed too; the retry names the failure (new link), then -32042."""
    url, backend = await mcp_serve()
    messages: list[Any] = []
    async with client(
        url, elicit=lambda *_: types.ElicitResult(action="accept"), messages=messages
    ) as session:
        await session.initialize()
        first = await _elicited(session)
        for _ in range(200):
            if backend.waits:
                break
            await asyncio.sleep(0.02)
        backend.fail()
        await _completed(messages, first)
        retried = await session.call_tool("whoami", {})
        assert retried.is_error
        text = retried.content[0].text
        assert "previous authorization for acme did not complete: it failed" in text and LINK in text
        assert retried.structured_content is not None
        assert retried.structured_content["authorization_url"] == LINK
        assert retried.structured_content["previous_authorization"].startswith("it failed")
        assert await _elicited(session) != first  # reported once: then a new elicitation


async def test_expired_elicitation_completes_and_the_retry_says_it_expired(mcp_serve: Serve) -> None:
    """An elicitation not finished within elicitation_timeout is completed; the retry says it expired."""
    url, _ = await mcp_serve(elicitation_timeout=0.2)
    messages: list[Any] = []
    async with client(
        url, elicit=lambda *_: types.ElicitResult(action="accept"), messages=messages
    ) as session:
        await session.initialize()
        await _completed(messages, await _elicited(session))
        retried = await session.call_tool("whoami", {})
        assert (
            retried.is_error
            and "did not complete: it was not completed within 0.2 s" in retried.content[0].text
        )


async def test_link_in_result_without_url_capability(mcp_serve: Serve) -> None:
    """A client without elicitation.url gets an isError result with the link and a retry hint."""
    url, _ = await mcp_serve()
    async with client(url, headers={"Keyturn-User-Id": "bob"}) as session:
        await session.initialize()
        result = await session.call_tool("whoami", {})
        assert result.is_error
        text = result.content[0].text
        assert LINK in text and "call this tool again" in text


async def test_user_headers(mcp_serve: Serve) -> None:
    """Keyturn-User-Id, then Arcade-User-ID, then default_user names the end user."""
    url, backend = await mcp_serve()
    backend.complete()
    for headers, user in (
        ({"Keyturn-User-Id": "bob"}, "bob"),
        ({"Arcade-User-ID": "carol"}, "carol"),
        ({}, "alice"),
    ):
        async with client(url, headers=headers) as session:
            await session.initialize()
            assert (await session.call_tool("whoami", {})).content[0].text == f"you are {user}"


def _init(version: str = "2025-11-25", capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {
        "protocolVersion": version,
        "capabilities": capabilities or {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


JSON_SSE = {"Accept": "application/json, text/event-stream"}


async def _post(http: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **JSON_SSE, **headers}
    async with http.post(url, data=data, headers=hdrs) as resp:
        text = await resp.text()
        return (
            resp.status,
            (json.loads(text) if text and resp.content_type == "application/json" else text),
            resp.headers,
        )


async def test_origin_and_host_checks(mcp_serve: Serve) -> None:
    """DNS rebinding: a foreign Origin or Host answers 403; loopback and allowed origins are served."""
    url, _ = await mcp_serve(allowed_origins=["https://app.example"])
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, url, _init(), Origin="https://evil.example"))[0] == 403
        assert (await _post(http, url, _init(), Host="evil.example.com"))[0] == 403
        assert (await _post(http, url, _init(), Host="evil.example.com", Origin="http://evil.example.com"))[
            0
        ] == 403
        assert (await _post(http, url, _init(), Origin="http://localhost:3000"))[0] == 200
        assert (await _post(http, url, _init(), Origin="http://[::1]:3000"))[0] == 200
        assert (await _post(http, url, _init(), Origin="https://app.example"))[0] == 200
        assert (await _post(http, url, _init(), Host="app.example"))[0] == 200
        async with http.get(
            url, headers={"Origin": "https://evil.example", "Accept": "text/event-stream"}
        ) as resp:
            assert resp.status == 403


async def test_sessions_and_errors_raw(mcp_serve: Serve) -> None:
    """Session header rules (400/404), version negotiation, 202s, -32700/-32600/-32601/-32602, DELETE."""
    url, _ = await mcp_serve()
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with aiohttp.ClientSession() as http:
        status, body, headers = await _post(http, url, _init())
        sid = headers["Mcp-Session-Id"]
        assert status == 200 and body["result"]["protocolVersion"] == "2025-11-25" and len(sid) >= 40
        for asked, got in (
            ("2025-06-18", "2025-06-18"),
            ("2025-03-26", "2025-03-26"),
            ("1999-01-01", "2025-11-25"),
        ):
            status, body, headers = await _post(http, url, _init(asked))
            assert body["result"]["protocolVersion"] == got and headers["Mcp-Session-Id"] != sid
        assert (await _post(http, url, ping))[0] == 400
        status, body, _ = await _post(http, url, ping, **{"Mcp-Session-Id": "nope"})
        assert status == 404 and body["error"]["code"] == -32600
        status, body, _ = await _post(http, url, ping, **{"Mcp-Session-Id": sid})
        assert (status, body) == (200, {"jsonrpc": "2.0", "id": 2, "result": {}})
        versioned = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
        assert (await _post(http, url, ping, **versioned))[0] == 200
        assert (await _post(http, url, ping, **{**versioned, "MCP-Protocol-Version": "2099-01-01"}))[0] == 400
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await _post(http, url, note, **{"Mcp-Session-Id": sid}))[0] == 202
        reply = {"jsonrpc": "2.0", "id": "s1", "result": {}}
        assert (await _post(http, url, reply, **{"Mcp-Session-Id": sid}))[0] == 202
        status, body, _ = await _post(http, url, b"{nope", **{"Mcp-Session-Id": sid})
        assert status == 400 and body["error"]["code"] == -32700
        for bad in (
            {"jsonrpc": "1.0", "id": 3, "method": "ping"},
            [ping],
            {"jsonrpc": "2.0", "id": 3, "method": 5},
        ):
            status, body, _ = await _post(http, url, bad, **{"Mcp-Session-Id": sid})
            assert status == 400 and body["error"]["code"] == -32600
        unknown = {"jsonrpc": "2.0", "id": 4, "method": "nope/nope"}
        assert (await _post(http, url, unknown, **{"Mcp-Session-Id": sid}))[1]["error"]["code"] == -32601
        call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": 7}}
        assert (await _post(http, url, call, **{"Mcp-Session-Id": sid}))[1]["error"]["code"] == -32602
        async with http.delete(url, headers={"Mcp-Session-Id": sid}) as resp:
            assert resp.status == 200
        assert (await _post(http, url, ping, **{"Mcp-Session-Id": sid}))[0] == 404
        async with http.delete(url, headers={"Mcp-Session-Id": sid}) as resp:
            assert resp.status == 404


async def test_get_stream_queues_notifications_raw(mcp_serve: Serve) -> None:
    """GET opens the SSE stream: keepalive comments, a queued elicitation/complete, end on DELETE."""
    url, backend = await mcp_serve(keepalive=0.2)
    caps = {"elicitation": {"url": {}}}
    async with aiohttp.ClientSession() as http:
        _, _, headers = await _post(http, url, _init(capabilities=caps))
        sid = headers["Mcp-Session-Id"]
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }
        _, body, _ = await _post(http, url, call, **{"Mcp-Session-Id": sid})
        elicitation = body["error"]["data"]["elicitations"][0]
        assert body["error"]["code"] == -32042 and elicitation["mode"] == "url" and elicitation["url"] == LINK
        backend.complete()  # before any stream is open: the notification waits in the queue
        async with http.get(url, headers={"Mcp-Session-Id": sid}) as resp:
            assert resp.status == 406
        async with http.get(url, headers={"Mcp-Session-Id": sid, "Accept": "text/event-stream"}) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            seen = b""
            while b"elicitation/complete" not in seen or b": keepalive" not in seen:
                seen += await asyncio.wait_for(resp.content.readline(), 10)
            data = next(line for line in seen.splitlines() if line.startswith(b"data: "))
            note = json.loads(data[6:])
            assert note == {
                "jsonrpc": "2.0",
                "method": "notifications/elicitation/complete",
                "params": {"elicitationId": elicitation["elicitationId"]},
            }
            async with http.delete(url, headers={"Mcp-Session-Id": sid}) as gone:
                assert gone.status == 200
            await asyncio.wait_for(resp.content.read(), 10)  # the stream ends with the session


async def _events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` SSE events of a stream: (id, message)."""
    events: list[tuple[str, dict[str, Any]]] = []
    event_id = ""
    while len(events) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, json.loads(line[6:])))
            event_id = ""
    return events


async def test_get_stream_resumes_after_last_event_id(mcp_serve: Serve) -> None:
    """GET stream events have ids; a reconnect with Last-Event-ID replays what followed it, a new one none."""
    url, backend = await mcp_serve(keepalive=0.2)
    async with aiohttp.ClientSession() as http:
        _, _, headers = await _post(http, url, _init(capabilities={"elicitation": {"url": {}}}))
        sid = headers["Mcp-Session-Id"]
        elicited = []
        for msg_id in (2, 3):  # two elicitations on the one pending flow: two notifications when it completes
            call = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {"name": "whoami"}}
            _, body, _ = await _post(http, url, call, **{"Mcp-Session-Id": sid})
            elicited.append(body["error"]["data"]["elicitations"][0]["elicitationId"])
        backend.complete()
        stream = {"Mcp-Session-Id": sid, "Accept": "text/event-stream"}
        async with http.get(url, headers=stream) as resp:
            first = await _events(resp, 2)
        assert sorted(m["params"]["elicitationId"] for _, m in first) == sorted(elicited)
        ids = [event_id for event_id, _ in first]
        assert len(set(ids)) == 2 and all(ids)
        async with http.get(url, headers={**stream, "Last-Event-ID": ids[0]}) as resp:
            assert await _events(resp, 1) == [first[1]]  # the same id and message
        async with http.get(url, headers=stream) as resp:  # a new stream: nothing replayed, keepalives only
            seen = b""
            while seen.count(b": keepalive") < 2:
                seen += await asyncio.wait_for(resp.content.readline(), 10)
            assert b"data: " not in seen
        async with http.get(
            url, headers={**stream, "Last-Event-ID": "9.9"}
        ) as resp:  # not issued: new stream
            seen = b""
            while seen.count(b": keepalive") < 2:
                seen += await asyncio.wait_for(resp.content.readline(), 10)
            assert b"data: " not in seen


async def test_sse_answer_when_only_sse_accepted(mcp_serve: Serve) -> None:
    """A client accepting only text/event-stream gets its answer as one SSE event."""
    url, _ = await mcp_serve()
    async with aiohttp.ClientSession() as http:
        status, body, headers = await _post(http, url, _init(), Accept="text/event-stream")
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        assert '"protocolVersion":"2025-11-25"' in body and body.startswith("event: message\ndata: ")


async def test_api_key_required(mcp_serve: Serve) -> None:
    """require_api_key fails closed without the middleware; with it, /mcp needs the key (unless auth none)."""
    url, _ = await mcp_serve(require_api_key=True)
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, url, _init()))[0] == 401

    class Keys:
        async def verify(self, presented: str, *, limited: bool = False) -> Any | None:
            return {"kind": "test"} if presented == KEY else None

    guard = api_key_middleware(
        lambda _r: Keys(),
        SlidingWindowLimiter(100, 60.0),
        lambda _r: "127.0.0.1",
        needs_key=lambda path: needs_api_key_or_mcp(path, mcp_auth="api_key"),
    )
    url, _ = await mcp_serve(middlewares=(guard,), require_api_key=True)
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, url, _init(), Authorization="Bearer wrong"))[0] == 401
        assert (await _post(http, url, _init(), Authorization=f"Bearer {KEY}"))[0] == 200
    async with client(url, headers={"Authorization": f"Bearer {KEY}"}) as session:
        await session.initialize()
        assert [t.name for t in (await session.list_tools()).tools] == ["echo", "whoami"]
    assert needs_api_key_or_mcp("/mcp", mcp_auth="api_key") and not needs_api_key_or_mcp(
        "/mcp", mcp_auth="none"
    )
    assert needs_api_key_or_mcp("/v1/tools", mcp_auth="none") and not needs_api_key_or_mcp(
        "/ping", mcp_auth="api_key"
    )


async def test_large_request_is_read_whole(mcp_serve: Serve) -> None:
    """A 500 KB tools/call from the official client is read whole and answered."""
    url, _ = await mcp_serve()
    text = "0123456789" * 50_000
    async with client(url) as session:
        await session.initialize()
        result = await session.call_tool("echo", {"text": text})
        assert not result.is_error and result.content[0].text == text


async def test_request_past_the_cap_is_413_naming_the_limit(mcp_serve: Serve) -> None:
    """A message over 4 MiB, announced or chunked, is a 413 JSON-RPC error that names the limit."""
    url, _ = await mcp_serve()
    big = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"x": "y" * (4 << 20)}}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    async with aiohttp.ClientSession() as http:
        for data in (big, pieces()):
            hdrs = {"Content-Type": "application/json", **JSON_SSE}
            async with http.post(url, data=data, headers=hdrs) as resp:
                assert resp.status == 413
                body = await resp.json()
            assert body["error"]["code"] == -32600
            assert (
                body["error"]["message"] == "Invalid Request: the message is larger than the limit of 4 MiB"
            )


def _rpc_error(body: Any, code: int, msg_id: Any = None) -> str:
    """The message of a JSON-RPC error object (asserting its shape, code and id)."""
    assert isinstance(body, dict) and set(body) == {"jsonrpc", "id", "error"}, body
    assert body["jsonrpc"] == "2.0" and body["id"] == msg_id and body["error"]["code"] == code, body
    return str(body["error"]["message"])


REST_EDGE = (request_id_middleware, error_middleware)  # what the engine's app puts in front of /mcp


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 1024 levels"),
        (b'{"jsonrpc":"2.0","id":' + b"1" * 5000 + b',"method":"ping"}', "number is too large"),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', "unexpected character"),
        (b'{"jsonrpc":"2.0","id":1,"method":"\\udc00"}', "surrogate"),
        (b"{nope", "line 1 column 2"),
    ],
)
async def test_bad_json_is_a_parse_error(mcp_serve: Serve, raw: bytes, reason: str) -> None:
    """Deep nesting, a 5,000-digit id, NaN, a lone surrogate, not JSON: 400 and -32700 saying why."""
    url, _ = await mcp_serve(middlewares=REST_EDGE)
    async with aiohttp.ClientSession() as http:
        _, _, headers = await _post(http, url, _init())
        status, body, _ = await _post(http, url, raw, **{"Mcp-Session-Id": headers["Mcp-Session-Id"]})
    assert status == 400
    assert reason in _rpc_error(body, -32700)


async def test_errors_are_json_rpc_behind_the_rest_error_middleware(mcp_serve: Serve) -> None:
    """Behind the engine's REST error middleware every /mcp error is still a JSON-RPC error object
    carrying the server's own message (origin, API key, session, Accept, invalid request)."""
    url, _ = await mcp_serve(middlewares=REST_EDGE, require_api_key=True, allowed_origins=[])
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    async with aiohttp.ClientSession() as http:
        status, body, headers = await _post(http, url, _init(), Origin="https://evil.example")
        assert status == 403 and "Origin is not allowed" in _rpc_error(body, -32000)
        assert body["error"]["data"] == {"error": "origin_not_allowed"}
        status, body, headers = await _post(http, url, _init())
        assert status == 401 and "missing API key" in _rpc_error(body, -32000)
        assert headers["WWW-Authenticate"].startswith("Bearer")
    url, _ = await mcp_serve(middlewares=REST_EDGE)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await _post(http, url, ping)
        assert status == 400 and "Mcp-Session-Id header is required" in _rpc_error(body, -32600)
        status, body, _ = await _post(http, url, ping, **{"Mcp-Session-Id": "gone"})
        assert status == 404 and "Session not found" in _rpc_error(body, -32600)
        status, body, _ = await _post(http, url, {"jsonrpc": "1.0", "id": 9, "method": "ping"})
        assert status == 400 and "JSON-RPC 2.0" in _rpc_error(body, -32600, 9)
        async with http.get(url, headers={"Mcp-Session-Id": "x"}) as resp:
            assert resp.status == 406
            assert "Accept: text/event-stream" in _rpc_error(await resp.json(), -32000)
        async with http.delete(url, headers={"Mcp-Session-Id": "gone"}) as resp:
            assert resp.status == 404 and "Session not found" in _rpc_error(await resp.json(), -32600)


async def test_handler_failures_are_json_rpc(mcp_serve: Serve) -> None:
    """An engine error in tools/list answers with its own message; an unexpected one -32603, no trace."""
    url, backend = await mcp_serve(middlewares=REST_EDGE)
    async with aiohttp.ClientSession() as http:
        _, _, headers = await _post(http, url, _init())
        sid = {"Mcp-Session-Id": headers["Mcp-Session-Id"]}
        listing = {"jsonrpc": "2.0", "id": "l1", "method": "tools/list"}
        backend.list_fails = Unavailable("the tool registry is not ready; try again")
        status, body, _ = await _post(http, url, listing, **sid)
        assert status == 200 and _rpc_error(body, -32603, "l1") == "the tool registry is not ready; try again"
        assert body["error"]["data"] == {"error": "unavailable", "status": 503}
        backend.list_fails = RuntimeError("secret internals")
        status, body, _ = await _post(http, url, listing, **sid)
        assert status == 500 and "Internal error" in _rpc_error(body, -32603)
        assert "secret internals" not in json.dumps(body)


async def test_user_id_longer_than_256_is_400(mcp_serve: Serve) -> None:
    """Keyturn-User-Id (or Arcade-User-ID) over 256 characters is 400, not cut to another user."""
    url, backend = await mcp_serve(middlewares=REST_EDGE)
    backend.complete()
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    async with aiohttp.ClientSession() as http:
        _, _, headers = await _post(http, url, _init())
        sid = headers["Mcp-Session-Id"]
        for header in ("Keyturn-User-Id", "Arcade-User-ID"):
            status, body, _ = await _post(http, url, call, **{"Mcp-Session-Id": sid, header: "u" * 257})
            assert status == 400 and f"{header} is longer than 256" in _rpc_error(body, -32600, 3)
            status, body, _ = await _post(http, url, _init(), **{header: "u" * 257})
            assert status == 400
        status, body, _ = await _post(
            http, url, call, **{"Mcp-Session-Id": sid, "Keyturn-User-Id": "u" * 256}
        )
        assert status == 200 and body["result"]["content"][0]["text"] == "you are " + "u" * 256
