"""engine.wiring.settings: reloads are serialized and report changed, restart-needing and failed keys."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from engine.config.model import Config, LifecycleConfig, StorageConfig
from engine.crypto.cipher import generate_key
from engine.errors import ConfigError
from engine.wiring.services import AUDITOR, STORE
from engine.wiring.settings import ReloadReport, Settings, SettingsHolder, changed_keys


def test_changed_keys_are_dotted_paths() -> None:
    """Only the keys whose values differ are named, as dotted paths; a list counts as one key."""
    old = Config()
    new = dataclasses.replace(
        old,
        lifecycle=dataclasses.replace(old.lifecycle, refresh_interval=LifecycleConfig().refresh_interval / 2),
        storage=StorageConfig(url="sqlite+aiosqlite:///other.db"),
        workers=(),
    )
    assert changed_keys(old, new) == ["storage.url", "lifecycle.refresh_interval"]


async def test_restart_keys_and_subscriber_failures_are_reported() -> None:
    """storage.* is reported as needing a restart; a subscriber's ConfigError is reported, the rest run."""
    holder = SettingsHolder(Settings(config=Config(), providers={}))
    ran: list[str] = []

    async def failing(old: Settings, new: Settings, report: ReloadReport) -> None:
        raise ConfigError("cannot open /nope/audit.log", path="audit.file")

    async def fine(old: Settings, new: Settings, report: ReloadReport) -> None:
        ran.append("fine")

    holder.subscribe(failing)
    holder.subscribe(fine)
    new = Config(storage=StorageConfig(url="sqlite+aiosqlite:///x.db"))
    report = await holder.reload(Settings(config=new, providers={}))
    assert report.needs_restart == ["storage.url"]
    assert report.failed == {"audit.file": "cannot open /nope/audit.log"}
    assert ran == ["fine"] and holder.current.config is new


async def test_reloads_are_serialized() -> None:
    """Two reloads at once: the second starts applying only after the first finished."""
    holder = SettingsHolder(Settings(config=Config(), providers={}))
    trace: list[str] = []

    async def slow(old: Settings, new: Settings, report: ReloadReport) -> None:
        trace.append(f"start {new.source}")
        await asyncio.sleep(0.05)
        trace.append(f"end {new.source}")

    holder.subscribe(slow)
    await asyncio.gather(
        holder.reload(Settings(config=Config(), providers={}, source="a")),
        holder.reload(Settings(config=Config(), providers={}, source="b")),
    )
    assert trace == ["start a", "end a", "start b", "end b"]


async def test_root_keys_applied_hot_when_every_old_key_is_kept(keyturn_engine: Any) -> None:
    """A new default root key beside the old one applies at once; dropping the old one needs a restart."""
    k1, k2 = generate_key(), generate_key()
    engine = await keyturn_engine(
        f"security: {{api_keys: ['test-api-key-0123456789abcdef'], root_keys: [{{id: k1, value: '{k1}'}}]}}"
    )
    both = f"[{{id: k1, value: '{k1}'}}, {{id: k2, value: '{k2}', default: true}}]"
    report = await engine.reconfigure(f"security: {{api_keys: ['x-0123456789abcdef'], root_keys: {both}}}")
    assert "security.root_keys" in report.changed and report.needs_restart == []
    assert engine.app[STORE].keyring.default_id == "k2"
    report = await engine.reconfigure(f"security: {{root_keys: [{{id: k2, value: '{k2}'}}]}}")
    assert report.needs_restart == ["security.root_keys"]
    assert engine.app[STORE].keyring.key_ids == {"k1", "k2"}  # kept until a restart


async def test_audit_sink_that_cannot_open_keeps_the_old_sinks(keyturn_engine: Any, tmp_path: Any) -> None:
    """A reload to audit.file in a missing folder is reported as not applied; the old sinks stay."""
    engine = await keyturn_engine("")
    before = list(engine.app[AUDITOR].sinks)
    report = await engine.reconfigure(f"audit: {{sinks: [file], file: '{tmp_path}/nope/audit.log'}}")
    assert list(report.failed) == ["audit.file"]
    assert engine.app[AUDITOR].sinks == before
