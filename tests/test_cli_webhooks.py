"""keyturn webhooks list|replay against a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.cli.storecmd import open_store
from engine.crypto.cipher import generate_key
from engine.store.base import now_utc
from engine.store.outbox import OutboxEvent
from tests.plugins.webhook_receiver import SECRET


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"""
api: {{development: true}}
storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}
security: {{root_keys: [{{id: k, value: '{generate_key()}'}}]}}
webhooks:
  - {{id: app, url: 'https://app.example/hooks', secret: '{SECRET}', events: [flow.failed]}}
  - {{id: ops, url: 'https://ops.example/hooks', secret: '{SECRET}', events: [flow.failed]}}
""")
    return cfg


class Args:
    def __init__(self, cfg: Path) -> None:
        self.config = str(cfg)


async def _run(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def test_list_then_replay_a_failed_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """list shows each delivery with its status; replay queues a failed one again; the secret never shows."""
    cfg = write_config(tmp_path)
    async with open_store(Args(cfg), migrate=True) as store:  # type: ignore[arg-type]
        event_id = await store.outbox.add(OutboxEvent("flow.failed", {"flow_id": "fl_1"}))
        await store.outbox.fan_out(lambda t: ["app", "ops"])
        for d in await store.outbox.due(now_utc()):
            status = "failed" if d.endpoint_id == "app" else "delivered"
            await store.outbox.record_attempt(d.id, status=status, error="timeout")
    assert await _run(["webhooks", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count(event_id) == 2 and "failed" in out and "delivered" in out and "error=timeout" in out
    assert SECRET not in out
    assert await _run(["webhooks", "list", "--status", "failed", "-c", str(cfg)]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert " app " in line
    assert await _run(["webhooks", "replay", event_id, "--endpoint", "app", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == f"queued 1 delivery of {event_id}"
    async with open_store(Args(cfg)) as store:  # type: ignore[arg-type]
        [again] = await store.outbox.due(now_utc())
    assert again.endpoint_id == "app" and again.attempts == 0
    assert await _run(["webhooks", "replay", "evt_nope", "-c", str(cfg)]) == 1
    assert "nothing to replay" in capsys.readouterr().err
    assert await _run(["webhooks", "replay", "nonsense", "-c", str(cfg)]) == 1
    assert await _run(["webhooks", "replay", event_id, "--endpoint", "gone", "-c", str(cfg)]) == 1
