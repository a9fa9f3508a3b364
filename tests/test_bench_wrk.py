"""The benchmarks' validity check: a wrk run with a failing answer is invalid; the direct baseline is real.

Each wrk run here lasts 1 s on 1-2 connections. Skipped when wrk is not installed, except under CI=true
(./scripts/test installs it there).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench import wrk
from bench.execute import direct_token, invoke_body
from bench.harness import finish
from engine.tools.worker import worker_token
from tests.plugins.echo_worker import StartWorker


@pytest.fixture(autouse=True)
def _needs_wrk() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{wrk.INSTALL_HINT} (required under CI=true)")
        pytest.skip(wrk.INSTALL_HINT)


async def _tiny_server() -> tuple[web.AppRunner, str]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "completed"})

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=401)

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"status": "pending"})

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/refused", refused)
    app.router.add_get("/other", other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _wrk(url: str, requests: list[tuple[str, str | None]], **kw: Any) -> dict[str, float]:
    return await asyncio.to_thread(wrk.run, url, requests, connections=2, threads=1, duration=1, **kw)


async def test_a_run_with_a_non_2xx_answer_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One 401 among 200s counts as failed, and finish() exits 1 saying INVALID: N requests failed."""
    runner, url = await _tiny_server()
    try:
        result = await _wrk(url, [("/ok", None), ("/ok", None), ("/refused", None)], expect="completed")
    finally:
        await runner.cleanup()
    assert result["requests"] > 0 and result["non2xx"] > 0
    assert result["failed"] == result["non2xx"]
    monkeypatch.setenv("KEYTURN_BENCH_RESULTS", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        finish("selfcheck", {"rps": result["rps"]}, int(result["failed"]))
    assert exited.value.code == 1
    assert f"INVALID: {int(result['failed'])} requests failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "selfcheck.json").read_text())["failed_requests"] == result["failed"]


async def test_a_2xx_answer_without_the_expected_text_is_invalid() -> None:
    """A 200 that is not the expected answer (a pending status here) counts as failed."""
    runner, url = await _tiny_server()
    try:
        result = await _wrk(url, [("/ok", None), ("/other", None)], expect="completed")
    finally:
        await runner.cleanup()
    assert result["non2xx"] == 0 and result["wrong_body"] > 0 and result["failed"] == result["wrong_body"]


async def test_a_run_of_good_answers_is_valid() -> None:
    """Only 2xx answers with the expected text: many requests, none failed."""
    runner, url = await _tiny_server()
    try:
        result = await _wrk(url, [("/ok", None)], expect="completed")
    finally:
        await runner.cleanup()
    assert result["requests"] > 50 and result["failed"] == 0 and result["rps"] > 0


async def test_a_server_that_is_not_there_stops_the_run() -> None:
    """Nothing listening: the run raises (the benchmark exits non-zero) naming wrk's own error."""
    runner, url = await _tiny_server()
    await runner.cleanup()  # the port is free now
    with pytest.raises(RuntimeError, match="unable to connect"):
        await _wrk(url, [("/ok", None)])


async def test_the_direct_worker_baseline_runs_the_tool(echo_worker: StartWorker) -> None:
    """bench/execute's direct baseline: a real arcade-serve worker accepts its JWT and answers pong."""
    worker = await echo_worker()
    token = direct_token(worker.secret, 5)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{worker.url}/worker/tools/invoke", data=invoke_body(3), headers=headers) as resp,
    ):
        assert resp.status == 200
        answer = await resp.json()
    assert answer["success"] is True and answer["output"]["value"] == "pong"
    result = await _wrk(
        worker.url, [("/worker/tools/invoke", invoke_body(0))], method="POST", headers=headers, expect="pong"
    )
    assert result["requests"] > 0 and result["failed"] == 0
    # the old baseline's token (iat 3,000 s ahead) is refused on every request: the run is invalid
    future = {**headers, "Authorization": f"Bearer {worker_token(worker.secret, now=time.time() + 3000)}"}
    refused = await _wrk(
        worker.url, [("/worker/tools/invoke", invoke_body(0))], method="POST", headers=future
    )
    assert refused["requests"] > 0 and refused["non2xx"] == refused["requests"]
