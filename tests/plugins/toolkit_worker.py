"""A real arcade-serve worker serving Arcade's own toolkits from PyPI, in its own process.

`toolkit_worker(*packages, company=False)` starts it on 127.0.0.1 (port 0) with a worker secret,
serving the toolkit packages named (``arcade_gmail``, ``arcade_slack``, ...) and, with
``company=True``, the ``Company`` toolkit below, and with ``mail=True`` the ``Gmail``-named stand-in
toolkit below (no authorization, nothing sent anywhere) plus a ``Notes`` toolkit. It counts the
``/worker/tools`` calls it answers (``await worker.tools_calls()``, from ``GET /test/calls``, which
needs no token) and the stand-in tools' runs (``await worker.runs()``: tool name -> how many times it
ran). Stopped after the test.

    ARCADE_WORKER_SECRET=... python tests/plugins/toolkit_worker.py PACKAGE[,PACKAGE...] [company] [mail]

``Company.ListEvents`` declares ``Google(id="company-google-calendar")``: an explicit provider entry id.
"""

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

COMPANY_SCOPES = ["https://www.googleapis.com/auth/calendar.readonly"]


class ToolkitWorker:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, secret: str) -> None:
        self.proc = proc
        self.port = port
        self.secret = secret
        self.url = f"http://127.0.0.1:{port}"

    def yaml(self, worker_id: str = "toolkits") -> str:
        return (
            f"workers:\n  - {{id: {worker_id}, uri: '{self.url}', secret: '{self.secret}', timeout: 30s}}\n"
        )

    async def tools_calls(self) -> int:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/test/calls") as resp:
            return int((await resp.json())["worker_tools"])

    async def runs(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/test/calls") as resp:
            return dict((await resp.json())["runs"])


StartToolkitWorker = Callable[..., Awaitable[ToolkitWorker]]


@pytest.fixture
async def toolkit_worker() -> AsyncIterator[StartToolkitWorker]:
    started: list[ToolkitWorker] = []

    async def start(*packages: str, company: bool = False, mail: bool = False) -> ToolkitWorker:
        secret = secrets.token_urlsafe(32)
        args = [",".join(packages)] + (["company"] if company else []) + (["mail"] if mail else [])
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            *args,
            env={**os.environ, "ARCADE_WORKER_SECRET": secret},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError):
            proc.kill()
            err = await proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"the toolkit worker did not start: {err.decode()[-2000:]}") from None
        worker = ToolkitWorker(proc, port, secret)
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


def _company_tools() -> list[Any]:
    # no `from __future__ import annotations` in this file: arcade reads these annotations as objects
    from typing import Annotated

    from arcade_tdk import ToolContext, tool
    from arcade_tdk.auth import Google

    @tool(requires_auth=Google(id="company-google-calendar", scopes=COMPANY_SCOPES))
    def list_events(context: ToolContext, day: Annotated[str, "The day, YYYY-MM-DD"]) -> str:
        """List the day's events from the company's Google calendar."""
        return f"no events on {day}"

    return [list_events]


RUNS: dict[str, int] = {}
INBOX = [
    {"id": "m1", "from": "carol@example.com", "snippet": "my SSN is 123-45-6789"},
    {"id": "m2", "from": "dave@example.com", "snippet": "lunch on friday?"},
]


def _mail_tools() -> list[tuple[Any, str]]:
    """Stand-ins with Gmail's names and parameters that send nothing: (function, toolkit)."""
    from typing import Annotated

    from arcade_tdk import ToolContext, tool

    def ran(name: str) -> None:
        RUNS[name] = RUNS.get(name, 0) + 1

    @tool
    def send_email(
        recipient: Annotated[str, "The recipient's email address"],
        subject: Annotated[str, "The subject"],
        body: Annotated[str, "The body"],
    ) -> dict[str, str]:
        """Send an email (a stand-in: it only says what it would send)."""
        ran("Gmail.SendEmail")
        return {"sent_to": recipient, "subject": subject, "body": body}

    @tool
    def list_emails(n_emails: Annotated[int, "How many emails"] = 5) -> dict[str, Any]:
        """List the latest emails of the inbox."""
        ran("Gmail.ListEmails")
        return {"emails": INBOX[:n_emails]}

    @tool
    def delete_email(email_id: Annotated[str, "The email's id"]) -> str:
        """Delete an email."""
        ran("Gmail.DeleteEmail")
        return f"deleted {email_id}"

    @tool
    def add(text: Annotated[str, "The note"]) -> str:
        """Add a note."""
        ran("Notes.Add")
        return f"noted: {text}"

    @tool(requires_secrets=["SIGNATURE"])
    def sign(context: ToolContext, text: Annotated[str, "What to sign"]) -> str:
        """Sign a text with the SIGNATURE secret."""
        ran("Notes.Sign")
        return f"{text} -- {context.get_secret('SIGNATURE')}"

    mail = [(f, "Gmail") for f in (send_email, list_emails, delete_email)]
    return [*mail, (add, "Notes"), (sign, "Notes")]


def _build_app(packages: list[str], company: bool, mail: bool = False) -> Any:
    from arcade_core.toolkit import Toolkit
    from arcade_serve.fastapi import FastAPIWorker
    from arcade_tdk import ToolCatalog
    from fastapi import FastAPI, Request

    catalog = ToolCatalog()
    for package in packages:
        catalog.add_toolkit(Toolkit.from_package(package))
    if company:
        for func in _company_tools():
            catalog.add_tool(func, "Company")
    if mail:
        for func, toolkit in _mail_tools():
            catalog.add_tool(func, toolkit)
    app = FastAPI()
    calls = {"worker_tools": 0}

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        if request.url.path == "/worker/tools":
            calls["worker_tools"] += 1
        return await call_next(request)

    @app.get("/test/calls")
    async def show_calls() -> dict[str, Any]:
        return {**calls, "runs": RUNS}

    worker = FastAPIWorker(app, secret=os.environ["ARCADE_WORKER_SECRET"])
    worker.catalog = catalog
    return app


def main() -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            print(json.dumps({"port": self.servers[0].sockets[0].getsockname()[1]}), flush=True)

    packages = [p for p in sys.argv[1].split(",") if p] if len(sys.argv) > 1 else []
    app = _build_app(packages, "company" in sys.argv[2:], "mail" in sys.argv[2:])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    Server(config).run()


if __name__ == "__main__":
    main()
