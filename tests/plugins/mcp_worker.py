"""A worker built with arcade-mcp-server (tests/mcp_worker/server.py) in its own process.

`arcade_mcp_worker(userinfo_url)` starts it on 127.0.0.1 (port 0) with a worker secret and returns an
``EchoWorker``-shaped handle (``url``, ``secret``, ``yaml()``); it is stopped after the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.plugins.echo_worker import EchoWorker

SERVER = Path(__file__).resolve().parent.parent / "mcp_worker" / "server.py"

StartWorker = Callable[..., Awaitable[EchoWorker]]


@pytest.fixture
async def arcade_mcp_worker() -> AsyncIterator[StartWorker]:
    started: list[EchoWorker] = []

    async def start(userinfo_url: str = "http://127.0.0.1:1/userinfo") -> EchoWorker:
        secret = secrets.token_urlsafe(32)
        env = {**os.environ, "ARCADE_WORKER_SECRET": secret, "USERINFO_URL": userinfo_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER),
            "0",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        port = None
        try:
            while port is None:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                if not line:
                    raise RuntimeError("the arcade-mcp-server worker exited before listening")
                try:
                    port = int(json.loads(line)["port"])
                except (ValueError, KeyError, TypeError):
                    continue
        except BaseException:
            proc.kill()
            raise
        worker = EchoWorker(proc, port, secret)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.returncode is None:
            worker.proc.terminate()
            try:
                await asyncio.wait_for(worker.proc.wait(), 10)
            except TimeoutError:
                worker.proc.kill()
