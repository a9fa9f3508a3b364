"""engine.webhooks.deliver: outbox events reach a loopback receiver, signed, at least once, in background."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from engine.crypto.cipher import Keyring, decode_key, generate_key
from engine.metrics.registry import METRICS
from engine.store.store import Store
from engine.wiring.services import REFRESHER, REVOKER
from engine.wiring.webhooks import WEBHOOKS
from tests.plugins.fake_provider import FakeProvider
from tests.plugins.fake_provider import engine_config as fake_config
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.webhook_receiver import Receiver, verify, webhooks_yaml
from tests.test_daemon import start_serve

USER = "alice@example.test"


async def connect(engine_url: str, api: aiohttp.ClientSession, browser: aiohttp.ClientSession) -> str:
    """authorize at the fake provider and follow the link like a browser: the flow id."""
    body = {"user_id": USER, "auth_requirement": {"provider_id": "fake", "oauth2": {"scopes": ["read"]}}}
    async with api.post(engine_url + "/v1/auth/authorize", json=body) as resp:
        flow = await resp.json()
        assert resp.status == 200 and flow["status"] == "pending", flow
    url = flow["url"]
    for _ in range(4):  # start -> provider -> callback -> page
        async with browser.get(url, allow_redirects=False) as resp:
            if resp.status not in (302, 303):
                assert resp.status == 200, await resp.text()
                return str(flow["id"])
            url = resp.headers["Location"]
    raise AssertionError("the flow did not end")


async def started(keyturn_engine: Any, fake: FakeProvider, receiver: Receiver, extra: str = "") -> Any:
    return await keyturn_engine(fake_config(fake) + webhooks_yaml(receiver) + extra, scheduler=True)


def no_tokens(text: str, fake: FakeProvider) -> None:
    assert fake.issued_tokens and not [t for t in fake.issued_tokens if t in text]


async def test_connection_created_after_a_real_flow(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """A completed flow sends connection.created, signed per Standard Webhooks, with no token in it."""
    engine = await started(keyturn_engine, fake_provider, webhook_receiver)
    await connect(engine.url, engine.session, engine.browser)
    [got] = await webhook_receiver.wait_for(1)
    event = verify(got)
    grant = await engine.store.grants.find(USER, "fake")
    assert event["type"] == "connection.created" and event["id"] == got.headers["webhook-id"]
    assert event["id"].startswith("evt_") and event["created_at"].endswith("Z")
    assert event["data"] == {
        "grant_id": grant.id, "user_id": USER, "provider": "fake", "account": "default", "scopes": ["read"],
        "status": "active",
    }  # fmt: skip
    assert got.headers["Content-Type"] == "application/json"
    no_tokens(got.body + json.dumps(got.headers), fake_provider)
    [delivery] = await engine.store.outbox.list()
    assert delivery.status == "delivered" and delivery.attempts == 1


async def test_needs_reauth_after_the_provider_revokes_the_refresh_token(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """The provider revokes the refresh token: the next refresh sends connection.needs_reauth once."""
    engine = await started(keyturn_engine, fake_provider, webhook_receiver)
    await connect(engine.url, engine.session, engine.browser)
    await webhook_receiver.wait_for(1)
    grant = await engine.store.grants.find(USER, "fake")
    async with (
        aiohttp.ClientSession() as s,
        s.post(fake_provider.url("/revoke"), data={"token": grant.refresh_token}) as resp,
    ):
        assert resp.status == 200
    outcome = await engine.app[REFRESHER].refresh(grant.id, force=True)
    assert outcome.outcome == "needs_reauth"
    got = await webhook_receiver.wait_for(2)
    event = verify(got[1])
    assert event["type"] == "connection.needs_reauth"
    assert event["data"]["status"] == "needs_reauth" and event["data"]["reason"] == "invalid_grant"
    assert event["data"]["grant_id"] == grant.id and event["id"] != verify(got[0])["id"]
    no_tokens(got[1].body, fake_provider)
    await engine.app[REFRESHER].refresh(grant.id, force=True)  # already needs_reauth: nothing new
    await asyncio.sleep(0.5)
    assert len(webhook_receiver.received) == 2


async def test_a_receiver_failing_twice_gets_each_event_exactly_once_more(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """Each event answered 500 twice, then 204: three attempts with its webhook-id, one delivery, no more."""
    webhook_receiver.fail_each = 2
    engine = await started(keyturn_engine, fake_provider, webhook_receiver)
    await connect(engine.url, engine.session, engine.browser)
    await webhook_receiver.wait_for(1)
    grant = await engine.store.grants.find(USER, "fake")
    fake_provider._live_refresh.clear()  # the provider revokes every refresh token it issued
    assert (await engine.app[REFRESHER].refresh(grant.id, force=True)).outcome == "needs_reauth"
    delivered = await webhook_receiver.wait_for(2)
    assert [verify(r)["type"] for r in delivered] == ["connection.created", "connection.needs_reauth"]
    await asyncio.sleep(1.0)  # retries are 100-200 ms apart: a duplicate would have come by now
    by_id: dict[str, list[int]] = {}
    for r in webhook_receiver.received:
        by_id.setdefault(r.headers["webhook-id"], []).append(r.status)
    assert list(by_id.values()) == [[500, 500, 204], [500, 500, 204]]
    deliveries = await engine.store.outbox.list()
    assert [(d.status, d.attempts, d.last_error) for d in deliveries] == [("delivered", 3, None)] * 2
    sample = engine.app[METRICS].registry.get_sample_value
    assert sample("keyturn_webhook_deliveries_total", {"endpoint": "app", "outcome": "retry"}) == 4
    assert sample("keyturn_webhook_deliveries_total", {"endpoint": "app", "outcome": "delivered"}) == 2


async def test_gives_up_after_give_up_after_and_keeps_it_failed(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """A receiver that always fails: retried until give_up_after, then kept as failed (and counted)."""
    webhook_receiver.status = 503
    extra = webhooks_yaml(webhook_receiver, retry="{initial: 100ms, max: 100ms, give_up_after: 1s}")
    engine = await keyturn_engine(fake_config(fake_provider) + extra, scheduler=True)
    await connect(engine.url, engine.session, engine.browser)
    for _ in range(100):
        deliveries = await engine.store.outbox.list()
        if deliveries and deliveries[0].status == "failed":
            break
        await asyncio.sleep(0.05)
    [delivery] = deliveries
    assert delivery.status == "failed" and delivery.last_error == "http_503" and delivery.attempts >= 3
    attempts = len(webhook_receiver.received)
    await asyncio.sleep(0.5)
    assert len(webhook_receiver.received) == attempts
    sample = engine.app[METRICS].registry.get_sample_value
    assert sample("keyturn_webhook_deliveries_total", {"endpoint": "app", "outcome": "failed"}) == 1


async def test_a_hanging_receiver_never_slows_a_flow_or_a_refresh(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """Deliveries hang for 60 s: the flow, a refresh and a disconnect still answer at once."""
    webhook_receiver.hang_first = 100
    engine = await started(keyturn_engine, fake_provider, webhook_receiver)
    began = time.monotonic()
    await connect(engine.url, engine.session, engine.browser)
    await webhook_receiver.wait_for(1, delivered=False)  # the delivery is in flight, hanging
    grant = await engine.store.grants.find(USER, "fake")
    assert (await engine.app[REFRESHER].refresh(grant.id, force=True)).outcome == "refreshed"
    assert (await engine.app[REVOKER].revoke(grant.id)).outcome == "revoked"
    assert time.monotonic() - began < 5.0


async def test_reload_applies_a_new_endpoint(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """webhooks[] added by a reload: applied without a restart, the next event goes to it."""
    engine = await keyturn_engine(fake_config(fake_provider), scheduler=True)
    await connect(engine.url, engine.session, engine.browser)
    await asyncio.sleep(0.3)
    assert webhook_receiver.received == []  # no endpoint: nobody was told of that one
    report = await engine.reconfigure(fake_config(fake_provider) + webhooks_yaml(webhook_receiver))
    assert "webhooks" in report.changed and not report.needs_restart and not report.failed
    grant = await engine.store.grants.find(USER, "fake")
    await engine.app[REVOKER].revoke(grant.id)
    [got] = await webhook_receiver.wait_for(1)
    assert verify(got)["type"] == "connection.revoked"


async def test_flow_failed_is_sent(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """A flow the provider refuses sends flow.failed with the provider's error word."""
    fake_provider.authorize_error = "access_denied"
    engine = await started(keyturn_engine, fake_provider, webhook_receiver)
    body = {"user_id": USER, "auth_requirement": {"provider_id": "fake", "oauth2": {"scopes": ["read"]}}}
    _, flow = await engine.api("POST", "/v1/auth/authorize", json=body)
    url = flow["url"]
    for _ in range(3):
        async with engine.browser.get(url, allow_redirects=False) as resp:
            if resp.status not in (302, 303):
                break
            url = resp.headers["Location"]
    [got] = await webhook_receiver.wait_for(1)
    event = verify(got)
    assert event["type"] == "flow.failed"
    assert event["data"] == {
        "flow_id": flow["id"],
        "user_id": USER,
        "provider": "fake",
        "reason": "access_denied",
    }


async def test_events_written_before_a_kill_9_are_delivered_after_restart(
    tmp_path: Path, fake_provider: FakeProvider, webhook_receiver: Receiver
) -> None:
    """serve is killed -9 while its delivery hangs; after a restart the event arrives, same id, signed."""
    webhook_receiver.hang_first = 1
    key = generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"api: {{development: true, port: 0}}\nstorage: {{url: '{db}'}}\n"
        f"security: {{api_keys: ['{API_KEY}'], root_keys: [{{id: k, value: '{key}'}}]}}\n"
        "lifecycle: {lease_ttl: 1s}\nlogging: {level: info, format: json}\n"
        + fake_config(fake_provider)
        + webhooks_yaml(webhook_receiver)
    )
    served, pump = await start_serve(config)
    api = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"})
    browser = aiohttp.ClientSession()
    try:
        await connect(served.url, api, browser)
        [hanging] = await webhook_receiver.wait_for(1, delivered=False)
        served.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(served.proc.wait(), 10) == -signal.SIGKILL
        pump.cancel()
        store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"), migrate=False)
        try:
            [pending] = await store.outbox.list()
        finally:
            await store.close()
        assert pending.status == "pending" and pending.type == "connection.created"
        served, pump = await start_serve(config)
        [delivered] = await webhook_receiver.wait_for(1, timeout=20)
        event = verify(delivered)
        assert event["type"] == "connection.created" and event["id"] == hanging.headers["webhook-id"]
        assert urlsplit(webhook_receiver.url).path == "/hooks"
        no_tokens(delivered.body, fake_provider)
    finally:
        await api.close()
        await browser.close()
        if served.proc.returncode is None:
            served.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(served.proc.wait(), 15)
        pump.cancel()


@pytest.mark.parametrize("events", ["[connection.revoked]"])
async def test_only_the_events_an_endpoint_names_are_sent(
    keyturn_engine: Any, fake_provider: FakeProvider, webhook_receiver: Receiver, events: str
) -> None:
    """An endpoint taking only connection.revoked gets no connection.created, then the revocation."""
    extra = webhooks_yaml(webhook_receiver, events=events)
    engine = await keyturn_engine(fake_config(fake_provider) + extra, scheduler=True)
    await connect(engine.url, engine.session, engine.browser)
    await asyncio.sleep(0.3)
    assert webhook_receiver.received == []
    grant = await engine.store.grants.find(USER, "fake")
    await engine.app[REVOKER].revoke(grant.id)
    [got] = await webhook_receiver.wait_for(1)
    assert verify(got)["type"] == "connection.revoked"
    assert WEBHOOKS in engine.app
