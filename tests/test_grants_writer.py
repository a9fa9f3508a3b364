"""engine.grants.writer: the one refresh schedule, used alike by a completed flow and by a refresh."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.config.convert import Duration
from engine.config.model import Config, LifecycleConfig
from engine.grants.writer import lead_for, max_age_for, next_refresh_at
from engine.providers.model import Provider
from engine.providers.schema import OAuth2Spec
from engine.wiring.services import REFRESHER
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


def provider(**fields: Any) -> Provider:
    return Provider(
        id="acme", template_id=None, client_id="cid", client_secret=None, oauth2=OAuth2Spec(), **fields
    )


def test_next_refresh_at() -> None:
    """Lead before expiry, else max age after now, else never; never without a refresh token."""
    now = datetime.now(UTC)
    assert next_refresh_at(now + timedelta(hours=1), 300, None, now) == now + timedelta(minutes=55)
    assert next_refresh_at(None, 300, 600, now) == now + timedelta(minutes=10)
    assert next_refresh_at(None, 300, None, now) is None
    assert next_refresh_at(None, 300, 0, now) is None
    assert next_refresh_at(now + timedelta(hours=1), 300, 600, now, refreshable=False) is None


def test_provider_values_override_lifecycle_whenever_set() -> None:
    """A provider's refresh_lead / max_token_age win over lifecycle's when set, 0 included."""
    config = Config(lifecycle=LifecycleConfig(refresh_lead=Duration(300), max_token_age=Duration(7200)))
    assert lead_for(provider(), config) == 300 and max_age_for(provider(), config) == 7200
    assert lead_for(provider(refresh_lead=60), config) == 60
    assert lead_for(provider(refresh_lead=0), config) == 0
    assert max_age_for(provider(max_token_age=600), config) == 600
    assert max_age_for(provider(max_token_age=0), config) == 0
    unset = dataclasses.replace(config, lifecycle=LifecycleConfig())
    assert max_age_for(provider(), unset) is None


async def connect(engine: Any) -> Any:
    _, auth = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}},
    )
    async with engine.browser.get(auth["url"]) as resp:
        assert resp.status == 200
    return await engine.store.grants.find(USER, "acme")


async def test_provider_max_token_age_zero_wins_on_callback_and_refresh(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """max_token_age: 0 on the provider means no age-based refresh, after the callback as after a refresh."""
    extra = "      max_token_age: 0s\nlifecycle: {max_token_age: 2h}"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    mini_provider.expires_in = 0  # the provider says nothing about expiry
    grant = await connect(engine)
    assert grant.expires_at is None and grant.refresh_token
    assert grant.next_refresh_at is None  # the flow once fell back to lifecycle's 2h here
    result = await engine.app[REFRESHER].refresh(grant.id, force=True)
    assert result.outcome == "refreshed" and result.grant.next_refresh_at is None


async def test_provider_max_token_age_schedules_callback_and_refresh_alike(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """A provider's max_token_age (1h) over lifecycle's (2h) schedules both writes an hour ahead."""
    extra = "      max_token_age: 1h\nlifecycle: {max_token_age: 2h}"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    mini_provider.expires_in = 0
    grant = await connect(engine)
    delta = grant.next_refresh_at - datetime.now(UTC)
    assert timedelta(minutes=55) < delta <= timedelta(hours=1)
    result = await engine.app[REFRESHER].refresh(grant.id, force=True)
    delta = result.grant.next_refresh_at - datetime.now(UTC)
    assert result.outcome == "refreshed" and timedelta(minutes=55) < delta <= timedelta(hours=1)
