"""The reference worker (examples/worker/echo_worker.py, arcade-tdk + arcade-serve) in its own process.

`echo_worker(userinfo_url)` starts it on 127.0.0.1 (port 0) with a worker secret and returns its URL
and secret; it is stopped after the test.
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

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER = ROOT / "examples" / "worker" / "echo_worker.py"


class EchoWorker:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, secret: str) -> None:
        self.proc = proc
        self.port = port
        self.secret = secret
        self.url = f"http://127.0.0.1:{port}"

    def yaml(self, worker_id: str = "echo") -> str:
        return (
            f"workers:\n  - {{id: {worker_id}, uri: '{self.url}', secret: '{self.secret}', timeout: 10s}}\n"
        )


StartWorker = Callable[..., Awaitable[EchoWorker]]


@pytest.fixture
async def echo_worker() -> AsyncIterator[StartWorker]:
    started: list[EchoWorker] = []

    async def start(userinfo_url: str = "http://127.0.0.1:1/userinfo") -> EchoWorker:
        secret = secrets.token_urlsafe(32)
        env = {**os.environ, "ARCADE_WORKER_SECRET": secret, "ACME_USERINFO_URL": userinfo_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "0",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError):
            proc.kill()
            err = await proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"the echo worker did not start: {err.decode()[-2000:]}") from None
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
