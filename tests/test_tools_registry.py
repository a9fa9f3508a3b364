"""engine.tools.registry: the catalog from workers[] and tools.directors, against real workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.config.model import Config
from engine.errors import NotFound
from engine.events import Event, WorkerChecked
from engine.providers.load import load_text
from engine.tools import registry as registry_module
from engine.tools.registry import ToolRegistry, configured_workers, normalize


@pytest.fixture
async def registry_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def config_for(yaml: str) -> Config:
    return load_text("api: {development: true}\n" + yaml).config


def director_yaml(worker: Any, worker_id: str = "dw") -> str:
    return (
        "tools:\n  directors:\n    - id: default\n      workers:\n"
        f"        - id: {worker_id}\n          http: {{uri: '{worker.url}', secret: '{worker.secret}'}}\n"
    )


def test_normalize_accepts_both_name_forms() -> None:
    """Toolkit.Tool and Toolkit_Tool name the same tool, case-insensitively."""
    assert normalize("Echo.Say") == normalize("echo_say") == normalize(" ECHO.SAY ") == "echo.say"
    assert normalize("My_Kit.Do_It") == "my_kit.do_it"


def test_configured_workers_reads_both_sections(registry_session: aiohttp.ClientSession) -> None:
    """Workers come from workers[] and tools.directors[].workers[].http; disabled ones are skipped."""
    config = config_for(
        "workers:\n"
        "  - {id: a, uri: 'http://127.0.0.1:1', secret: s1, timeout: 7s}\n"
        "  - {id: disabled, uri: 'http://127.0.0.1:2', enabled: false}\n"
        "tools:\n  directors:\n    - id: d\n      workers:\n"
        "        - {id: b, http: {uri: 'http://127.0.0.1:3', secret: s2, timeout: 4s}}\n"
        "    - id: e\n      enabled: false\n      workers:\n"
        "        - {id: c, http: {uri: 'http://127.0.0.1:4'}}\n"
    )
    workers = configured_workers(config, registry_session)
    assert [(w.worker_id, w.uri, w.timeout) for w in workers] == [
        ("a", "http://127.0.0.1:1", 7.0),
        ("b", "http://127.0.0.1:3", 4.0),
    ]


async def test_catalog_from_director_worker(
    echo_worker: Any, registry_session: aiohttp.ClientSession
) -> None:
    """A director's worker fills the catalog; tools are found by either name form and filtered by toolkit."""
    worker = await echo_worker()
    config = config_for(director_yaml(worker))
    registry = ToolRegistry(lambda: config, registry_session)
    tools = await registry.all()
    names = [t.name for t in tools]
    assert names == sorted(names, key=str.lower) and {"Echo.Say", "Echo.Secret", "Echo.WhoAmI"} <= set(names)
    assert registry.up == {"dw": True}
    who = await registry.get("echo_whoami")
    assert who.auth is not None and who.auth["id"] == "acme" and who.auth["oauth2"]["scopes"] == ["email"]
    assert (await registry.get("Echo.Say")).auth is None
    assert await registry.all(toolkit="echo") and await registry.all(toolkit="Other") == []
    with pytest.raises(NotFound) as info:
        await registry.get("Echo.Nope")
    assert info.value.error == "unknown_tool" and "Echo.Nope" in info.value.msg


async def test_down_worker_keeps_last_good_list(
    echo_worker: Any, registry_session: aiohttp.ClientSession
) -> None:
    """A worker that stops answering keeps its last tools, is marked down and published as down."""
    worker = await echo_worker()
    config = config_for(
        f"workers: [{{id: w1, uri: '{worker.url}', secret: '{worker.secret}', timeout: 3s}}]\n"
    )
    seen: list[tuple[str, bool]] = []

    def publish(event: Event) -> None:
        assert isinstance(event, WorkerChecked)
        seen.append((event.worker, event.up))

    registry = ToolRegistry(lambda: config, registry_session, publish=publish)
    await registry.refresh()
    before = {t.name for t in await registry.all()}
    assert "Echo.Say" in before and registry.up["w1"] is True
    worker.proc.terminate()
    await worker.proc.wait()
    await registry.refresh()
    assert registry.up["w1"] is False
    assert {t.name for t in await registry.all()} == before
    assert seen == [("w1", True), ("w1", False)]


async def test_worker_removed_from_config_drops_its_tools(
    echo_worker: Any, registry_session: aiohttp.ClientSession
) -> None:
    """A tool on two workers goes to the first; a reload removing a worker drops its tools."""
    one, two = await echo_worker(), await echo_worker()
    both = config_for(
        f"workers:\n  - {{id: one, uri: '{one.url}', secret: '{one.secret}'}}\n"
        f"  - {{id: two, uri: '{two.url}', secret: '{two.secret}'}}\n"
    )
    current = {"config": both}
    registry = ToolRegistry(lambda: current["config"], registry_session)
    await registry.refresh()
    assert (await registry.get("Echo.Say")).worker.worker_id == "one"
    current["config"] = config_for("workers: []\n")
    await registry.refresh()
    assert await registry.all() == []


async def test_wrong_secret_marks_worker_down(
    echo_worker: Any, registry_session: aiohttp.ClientSession
) -> None:
    """A worker refusing the engine's JWT is down; the others still serve their tools."""
    good, bad = await echo_worker(), await echo_worker()
    config = config_for(
        f"workers:\n  - {{id: bad, uri: '{bad.url}', secret: wrong-secret-0123456789abcdef}}\n"
        + director_yaml(good, "good")
    )
    registry = ToolRegistry(lambda: config, registry_session)
    tools = await registry.all()
    assert registry.up == {"bad": False, "good": True}
    assert {t.worker.worker_id for t in tools} == {"good"}


async def test_unknown_names_ask_each_worker_at_most_once(
    keyturn_engine: Any, toolkit_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 executes of unknown tools cost each worker no /worker/tools call beyond one per interval."""
    one, two = await toolkit_worker(company=True), await toolkit_worker(company=True)
    engine = await keyturn_engine(
        one.yaml("one") + f"  - {{id: two, uri: '{two.url}', secret: '{two.secret}'}}\n"
    )
    status, page = await engine.api("GET", "/v1/tools")
    assert status == 200 and page["total_count"] == 1
    assert (await one.tools_calls(), await two.tools_calls()) == (1, 1)

    async def execute(name: str) -> int:
        status, _ = await engine.api("POST", "/v1/tools/execute", json={"tool_name": name, "input": {}})
        return status

    statuses = await asyncio.gather(*(execute(f"Nope.Tool{i}") for i in range(50)))
    assert set(statuses) == {404}
    assert (await one.tools_calls(), await two.tools_calls()) == (1, 1)  # listed just now: not asked again
    monkeypatch.setattr(registry_module, "MISS_REFRESH_INTERVAL", 0.5)
    await asyncio.sleep(0.6)
    statuses = await asyncio.gather(*(execute(f"Nope.Other{i}") for i in range(50)))
    assert set(statuses) == {404}
    assert (await one.tools_calls(), await two.tools_calls()) == (2, 2)  # one shared round, not 50


async def test_unknown_name_asks_a_newly_added_worker_at_once(
    echo_worker: Any, toolkit_worker: Any, registry_session: aiohttp.ClientSession
) -> None:
    """A worker added by a reload is asked on the first miss; a worker asked just before is not."""
    echo, company = await echo_worker(), await toolkit_worker(company=True)
    first = config_for(f"workers: [{{id: echo, uri: '{echo.url}', secret: '{echo.secret}'}}]\n")
    current = {"config": first}
    registry = ToolRegistry(lambda: current["config"], registry_session)
    await registry.refresh()
    with pytest.raises(NotFound):
        await registry.get("Company.ListEvents")
    current["config"] = config_for(
        f"workers:\n  - {{id: echo, uri: '{echo.url}', secret: '{echo.secret}'}}\n"
        f"  - {{id: company, uri: '{company.url}', secret: '{company.secret}'}}\n"
    )
    tool = await registry.get("Company.ListEvents")
    assert tool.worker.worker_id == "company" and await company.tools_calls() == 1
    assert (await registry.get("Echo.Say")).worker.worker_id == "echo"  # its last list still stands
