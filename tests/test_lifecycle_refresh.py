"""engine.lifecycle.refresh: single-flight refresh, rotation, failures, and the scheduler pass."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.events import RefreshObserved
from engine.lifecycle.refresh import backoff
from engine.wiring.services import REFRESHER
from engine.wiring.settings import EVENTS
from tests.plugins.fake_provider import engine_config as fake_engine_config
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


async def make_grant(engine: Any, p: MiniProvider, *, user: str = USER, expires_in: float = -10) -> Any:
    """A grant expiring in ``expires_in`` seconds, with a refresh token the provider knows."""
    refresh = p._token()
    p.valid_refresh.add(refresh)
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return await engine.store.grants.upsert(
        user,
        "acme",
        access_token=p._token(),
        refresh_token=refresh,
        id_token=None,
        token_type="Bearer",
        expires_at=expires,
        scopes=["read"],
        subject="u-1",
        user_info=None,
        token_metadata={},
        next_refresh_at=expires - timedelta(seconds=300),
    )


@pytest.fixture
async def engine(keyturn_engine: Any, mini_provider: MiniProvider) -> Any:
    return await keyturn_engine(
        acme_config(mini_provider, extra="lifecycle: {backoff_base: 1s, refresh_timeout: 1s}")
    )


async def test_refresh_rotates_and_persists(engine: Any, mini_provider: MiniProvider) -> None:
    """A rotating refresh replaces both tokens in one write; the old refresh token is dead at the provider."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["rotate"]
    result = await engine.app[REFRESHER].refresh(grant.id)
    assert result.outcome == "refreshed"
    fresh = await engine.store.grants.get(grant.id)
    assert fresh.refresh_token != grant.refresh_token and fresh.refresh_token in mini_provider.valid_refresh
    assert grant.refresh_token not in mini_provider.valid_refresh
    assert fresh.access_token != grant.access_token and fresh.version == grant.version + 1
    assert fresh.expires_at > datetime.now(UTC) + timedelta(minutes=50)


async def test_no_refresh_token_back_keeps_old(engine: Any, mini_provider: MiniProvider) -> None:
    """An answer without refresh_token keeps the stored one."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["ok"]
    await engine.app[REFRESHER].refresh(grant.id)
    assert (await engine.store.grants.get(grant.id)).refresh_token == grant.refresh_token


async def test_concurrent_readers_one_refresh(engine: Any, mini_provider: MiniProvider) -> None:
    """100 concurrent token reads on one expired grant cause exactly one refresh call."""
    await make_grant(engine, mini_provider)
    mini_provider.refresh_delay = 0.2
    refresher = engine.app[REFRESHER]
    results = await asyncio.gather(*(refresher.usable_grant(USER, "acme") for _ in range(100)))
    assert len(mini_provider.refresh_calls) == 1
    assert len({g.access_token for g in results}) == 1


async def test_500_then_success(engine: Any, mini_provider: MiniProvider) -> None:
    """A 5xx keeps tokens, counts a failure and schedules a retry; the next attempt refreshes."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["500", "ok"]
    refresher = engine.app[REFRESHER]
    assert (await refresher.refresh(grant.id)).outcome == "retry"
    failed = await engine.store.grants.get(grant.id)
    assert failed.access_token == grant.access_token and failed.refresh_failures == 1
    assert failed.last_error == "server_error" and failed.next_refresh_at > datetime.now(UTC)
    assert (await refresher.refresh(grant.id, force=True)).outcome == "refreshed"
    assert (await engine.store.grants.get(grant.id)).refresh_failures == 0


async def test_429_retry_after_honoured(engine: Any, mini_provider: MiniProvider) -> None:
    """429 with Retry-After: 120 puts the next attempt at least two minutes away."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["429"]
    await engine.app[REFRESHER].refresh(grant.id)
    after = await engine.store.grants.get(grant.id)
    assert after.next_refresh_at >= datetime.now(UTC) + timedelta(seconds=115)


async def test_invalid_grant_needs_reauth(engine: Any, mini_provider: MiniProvider) -> None:
    """invalid_grant marks the grant needs_reauth, once, with no retry scheduled."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["invalid_grant"]
    refresher = engine.app[REFRESHER]
    assert (await refresher.refresh(grant.id)).outcome == "needs_reauth"
    after = await engine.store.grants.get(grant.id)
    assert after.status == "needs_reauth" and after.next_refresh_at is None
    assert (await refresher.refresh(grant.id, force=True)).outcome == "skipped"
    assert len(mini_provider.refresh_calls) == 1
    assert await refresher.usable_grant(USER, "acme") is None


async def test_timeout_keeps_tokens(engine: Any, mini_provider: MiniProvider) -> None:
    """A refresh slower than refresh_timeout is retried later; tokens are unchanged."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["slow"]
    assert (await engine.app[REFRESHER].refresh(grant.id)).outcome == "retry"
    after = await engine.store.grants.get(grant.id)
    assert after.access_token == grant.access_token and after.last_error == "timeout"


async def test_lost_race_is_not_revocation(engine: Any, mini_provider: MiniProvider) -> None:
    """invalid_grant after another writer rotated the refresh token is a lost race, not needs_reauth."""
    grant = await make_grant(engine, mini_provider)
    refresher = engine.app[REFRESHER]
    original = refresher.d.oauth.refresh

    async def rotate_meanwhile(provider: Any, refresh_token: str, **kw: Any) -> Any:
        await engine.store.grants.update_tokens(
            grant.id,
            expected_version=grant.version,
            access_token="other-at",
            refresh_token="other-rt",
            expires_at=None,
            scopes=None,
            id_token=None,
            next_refresh_at=None,
        )
        mini_provider.refresh_plan = ["invalid_grant"]
        return await original(provider, refresh_token, **kw)

    refresher.d.oauth.refresh = rotate_meanwhile  # type: ignore[method-assign]
    try:
        result = await refresher.refresh(grant.id)
    finally:
        refresher.d.oauth.refresh = original  # type: ignore[method-assign]
    assert result.outcome == "lost_race"
    assert (await engine.store.grants.get(grant.id)).status == "active"


async def test_refresh_pass_only_due(engine: Any, mini_provider: MiniProvider) -> None:
    """A scheduler pass refreshes due grants and leaves the others alone."""
    due = [await make_grant(engine, mini_provider, user=f"u{i}@x.test") for i in range(5)]
    later = await make_grant(engine, mini_provider, user="later@x.test", expires_in=7200)
    counts = await engine.app[REFRESHER].refresh_due()
    assert counts == {"refreshed": 5}
    assert len(mini_provider.refresh_calls) == 5
    for g in due:
        assert (await engine.store.grants.get(g.id)).next_refresh_at > datetime.now(UTC)
    assert (await engine.store.grants.get(later.id)).version == later.version


async def test_refresh_pass_goes_past_a_full_batch(engine: Any, mini_provider: MiniProvider) -> None:
    """More due grants than one batch takes: the pass takes the next batch at once, each refreshed once."""
    due = [await make_grant(engine, mini_provider, user=f"b{i}@x.test") for i in range(25)]
    counts = await engine.app[REFRESHER].refresh_due(limit=10)
    assert counts == {"refreshed": 25}
    assert sorted(mini_provider.refresh_calls) == sorted(g.refresh_token for g in due)


def test_backoff() -> None:
    """Backoff grows, is capped, never undercuts Retry-After."""
    assert 15 <= backoff(1, 30, 3600, None) <= 30
    assert backoff(20, 30, 3600, None) <= 3600
    assert backoff(1, 30, 3600, 500) >= 500


async def test_long_failing_grant_is_reported(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """A grant failing for longer than failure_report_after is reported as overdue, not deleted."""
    engine = await keyturn_engine(
        acme_config(mini_provider, extra="lifecycle: {failure_report_after: 0s, backoff_base: 1s}")
    )
    seen: list[str] = []
    refresher = engine.app[REFRESHER]
    engine.app[EVENTS].subscribe(lambda e: seen.append(e.result) if isinstance(e, RefreshObserved) else None)
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["500"]
    assert (await refresher.refresh(grant.id)).outcome == "retry"
    assert seen == ["overdue"]
    assert (await engine.store.grants.get(grant.id)).status == "active"


@pytest.mark.parametrize("expires_in", [float("nan"), -5, "soon", 1e20])
async def test_refresh_with_strange_expires_in_keeps_the_rotated_token(
    keyturn_engine: Any, fake_provider: Any, expires_in: Any
) -> None:
    """A refresh answer with expires_in NaN, negative, text or 1e20 is stored, its new refresh token too."""
    engine = await keyturn_engine(fake_engine_config(fake_provider))
    old = fake_provider.live_refresh_token()
    grant = await engine.store.grants.upsert(
        USER,
        "fake",
        access_token="at-old",
        refresh_token=old,
        id_token=None,
        token_type="Bearer",
        expires_at=datetime.now(UTC) - timedelta(seconds=10),
        scopes=["read"],
        subject=None,
        user_info=None,
        token_metadata={},
        next_refresh_at=datetime.now(UTC) - timedelta(seconds=10),
    )
    fake_provider.expires_in = expires_in
    result = await engine.app[REFRESHER].refresh(grant.id)
    assert result.outcome == "refreshed"
    fresh = await engine.store.grants.get(grant.id)
    assert old not in fake_provider.live_refresh_tokens()
    assert fresh.status == "active" and fresh.refresh_token in fake_provider.live_refresh_tokens()
    if expires_in == 1e20:
        assert fresh.expires_at > datetime.now(UTC) + timedelta(days=3600)


async def test_refresh_answer_302_with_json_is_not_stored(keyturn_engine: Any, fake_provider: Any) -> None:
    """A refresh answered with HTTP 302 carrying tokens is a failure (retry later); the grant is unchanged."""
    engine = await keyturn_engine(fake_engine_config(fake_provider))
    old = fake_provider.live_refresh_token()
    grant = await engine.store.grants.upsert(
        USER,
        "fake",
        access_token="at-old",
        refresh_token=old,
        id_token=None,
        token_type="Bearer",
        expires_at=datetime.now(UTC) - timedelta(seconds=10),
        scopes=["read"],
        subject=None,
        user_info=None,
        token_metadata={},
        next_refresh_at=datetime.now(UTC) - timedelta(seconds=10),
    )
    fake_provider.token_answers = ["redirect_json"]
    result = await engine.app[REFRESHER].refresh(grant.id)
    assert result.outcome == "retry"
    fresh = await engine.store.grants.get(grant.id)
    assert fresh.access_token == "at-old" and fresh.refresh_token == old and fresh.last_error == "http_error"


async def test_refresh_failing_past_the_window_then_recovered(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """Transient failures past failure_report_after write connection.refresh_failing once; the next good
    refresh writes connection.recovered (each with the refresh's own write)."""
    engine = await keyturn_engine(
        acme_config(mini_provider, extra="lifecycle: {backoff_base: 1s, failure_report_after: 0s}")
    )
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["500", "500", "ok"]
    refresher = engine.app[REFRESHER]
    assert (await refresher.refresh(grant.id, force=True)).outcome == "retry"
    assert (await refresher.refresh(grant.id, force=True)).outcome == "retry"
    events = await engine.store.outbox.events()
    assert [t for _, t, _ in events] == ["connection.created", "connection.refresh_failing"]
    assert events[1][2]["reason"] == "server_error" and events[1][2]["grant_id"] == grant.id
    assert (await refresher.refresh(grant.id, force=True)).outcome == "refreshed"
    assert (await refresher.refresh(grant.id, force=True)).outcome == "refreshed"
    kinds = [t for _, t, _ in await engine.store.outbox.events()]
    assert kinds == ["connection.created", "connection.refresh_failing", "connection.recovered"]


async def test_failures_inside_the_window_write_no_event(engine: Any, mini_provider: MiniProvider) -> None:
    """A transient failure within failure_report_after (a day by default), then success: no webhook event."""
    grant = await make_grant(engine, mini_provider)
    mini_provider.refresh_plan = ["500", "ok"]
    assert (await engine.app[REFRESHER].refresh(grant.id, force=True)).outcome == "retry"
    assert (await engine.app[REFRESHER].refresh(grant.id, force=True)).outcome == "refreshed"
    assert [t for _, t, _ in await engine.store.outbox.events()] == ["connection.created"]


def _capped(p: MiniProvider, extra: str) -> str:
    """acme_config with ``refresh_concurrency: 3`` on the acme entry."""
    return acme_config(p, extra=extra).replace(
        "      client_id: cid\n", "      refresh_concurrency: 3\n      client_id: cid\n", 1
    )


async def test_provider_refresh_concurrency_caps_calls_in_flight(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """auth.providers[].refresh_concurrency: 3 keeps at most 3 refresh calls at the provider at once,
    while lifecycle.refresh_concurrency would allow 50; every grant is still refreshed."""
    engine = await keyturn_engine(
        _capped(
            mini_provider, "lifecycle: {refresh_concurrency: 50, refresh_jitter: 0s, refresh_timeout: 5s}"
        )
    )
    for i in range(12):
        await make_grant(engine, mini_provider, user=f"c{i}@x.test")
    mini_provider.refresh_delay = 0.1
    counts = await engine.app[REFRESHER].refresh_due()
    assert counts == {"refreshed": 12}
    assert mini_provider.refresh_max_in_flight == 3


async def test_429_pauses_the_whole_provider(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """A 429 with Retry-After: 1 stops every other call to that provider until the second is over;
    one longer than the refresh timeout leaves the other grants due and untouched (outcome paused)."""
    engine = await keyturn_engine(
        acme_config(mini_provider, extra="lifecycle: {refresh_jitter: 0s, refresh_timeout: 5s}")
    )
    refresher = engine.app[REFRESHER]
    first, second = [await make_grant(engine, mini_provider, user=f"p{i}@x.test") for i in range(2)]
    mini_provider.retry_after, mini_provider.refresh_plan = "1", ["429"]
    assert (await refresher.refresh(first.id)).outcome == "retry"
    started = asyncio.get_running_loop().time()
    assert (await refresher.refresh(second.id)).outcome == "refreshed"
    assert asyncio.get_running_loop().time() - started >= 0.8  # waited for the pause, then called
    mini_provider.retry_after, mini_provider.refresh_plan = "60", ["429"]
    third, fourth = [await make_grant(engine, mini_provider, user=f"q{i}@x.test") for i in range(2)]
    assert (await refresher.refresh(third.id)).outcome == "retry"
    calls = len(mini_provider.refresh_calls)
    assert (await refresher.refresh(fourth.id)).outcome == "paused"
    assert len(mini_provider.refresh_calls) == calls  # the provider was not called
    assert (await engine.store.grants.get(fourth.id)).version == fourth.version
