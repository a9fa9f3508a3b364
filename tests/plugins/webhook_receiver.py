"""A webhook receiver on 127.0.0.1 (port 0): ``webhook_receiver`` yields a started :class:`Receiver`.

Every request to ``/hooks`` is recorded as :class:`Received` (headers, raw body, the status answered).
Knobs: ``fail_first`` answers the first N requests with 500 (``fail_each``: the first N of each
event, by ``webhook-id``); ``hang_first`` holds the first N for
``hang_seconds`` before answering (a receiver that is down but accepts connections); ``status`` is
the answer otherwise (204). ``verify(received)`` checks a request with the ``standardwebhooks``
library and returns the parsed body. ``SECRET`` is a Standard Webhooks secret (``whsec_`` + base64).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"keyturn-webhook-test-secret-0123").decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    status: int


@dataclass
class Receiver:
    fail_first: int = 0
    fail_each: int = 0
    hang_first: int = 0
    hang_seconds: float = 60.0
    status: int = 204
    received: list[Received] = field(default_factory=list)
    server: TestServer | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set at teardown: hangs end at once

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hooks"))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        n = len(self.received)
        seen = sum(
            1 for r in self.received if r.headers.get("webhook-id") == request.headers.get("webhook-id")
        )
        status = 500 if n < self.fail_first or seen < self.fail_each else self.status
        record = Received(dict(request.headers), body, 0 if n < self.hang_first else status)
        self.received.append(record)
        if n < self.hang_first:  # status 0 until answered (never, when the sender is gone by then)
            with contextlib.suppress(TimeoutError):  # (the fixture's teardown ends every hang)
                await asyncio.wait_for(self.released.wait(), self.hang_seconds)
            record.status = status
        return web.Response(status=status)

    @property
    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.received if 200 <= r.status < 300]

    async def wait_for(self, count: int, *, delivered: bool = True, timeout: float = 15.0) -> list[Received]:
        """Wait until ``count`` requests (delivered ones, or any) arrived; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered if delivered else self.received
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.received)} webhook requests, {len(self.delivered)} delivered")


def verify(received: Received, secret: str = SECRET) -> dict[str, Any]:
    """The body, after ``standardwebhooks`` checked the signature headers (raises when they are wrong)."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


def webhooks_yaml(
    receiver: Receiver, *, events: str = "all", retry: str = "{initial: 100ms, max: 200ms}"
) -> str:
    """A ``webhooks:`` block with one endpoint ``app`` at the receiver (``events``: a YAML list, or all)."""
    if events == "all":
        events = (
            "[connection.created, connection.reauthorized, connection.needs_reauth, connection.revoked, "
            "connection.refresh_failing, connection.recovered, flow.failed]"
        )
    return f"""
webhooks:
  - id: app
    url: "{receiver.url}"
    secret: "{SECRET}"
    events: {events}
    retry: {retry}
    timeout: 2s
"""


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    receiver.server = TestServer(receiver.app(), host="127.0.0.1", port=0)
    await receiver.server.start_server()
    try:
        yield receiver
    finally:
        receiver.released.set()  # else closing waits for each held answer (up to hang_seconds)
        await receiver.server.close()
