"""Arcade's own Python client (arcadepy) against Keyturn: only the base URL and API key change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from arcadepy import AsyncArcade

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


@pytest.fixture
async def arcade(keyturn_engine: Any, mini_provider: MiniProvider) -> AsyncIterator[tuple[AsyncArcade, Any]]:
    engine = await keyturn_engine(acme_config(mini_provider))
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    yield client, engine
    await client.close()


async def follow(engine: Any, url: str) -> None:
    async with engine.browser.get(url, allow_redirects=False) as resp:
        provider_url = resp.headers["Location"]
    async with engine.browser.get(provider_url, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with engine.browser.get(callback) as resp:
        assert resp.status == 200


async def test_start_follow_wait(arcade: tuple[AsyncArcade, Any]) -> None:
    """auth.start -> the user follows url -> auth.wait_for_completion returns completed."""
    client, engine = arcade
    auth = await client.auth.start(USER, "acme", scopes=["read"])
    assert auth.status == "pending" and auth.url and auth.id
    await follow(engine, auth.url)
    done = await client.auth.wait_for_completion(auth)
    assert done.status == "completed" and done.scopes == ["read"] and done.user_id == USER
    again = await client.auth.start(USER, "acme", scopes=["read"])
    assert again.status == "completed"
    status = await client.auth.status(id=auth.id)
    assert status.status == "completed"


async def test_start_twice_same_authorization(arcade: tuple[AsyncArcade, Any]) -> None:
    """auth.start twice (and in a loop, as agents do) returns the same id and url, never a 429."""
    client, _ = arcade
    first = await client.auth.start(USER, "acme", scopes=["read"])
    for _ in range(7):
        again = await client.auth.start(USER, "acme", scopes=["read"])
        assert (again.id, again.url, again.status) == (first.id, first.url, "pending")


async def test_authorize_by_id_and_health(arcade: tuple[AsyncArcade, Any]) -> None:
    """auth.authorize with auth_requirement.id works, and health.check reports healthy."""
    client, _ = arcade
    auth = await client.auth.authorize(
        auth_requirement={"id": "acme", "provider_type": "oauth2", "oauth2": {"scopes": ["read"]}},
        user_id=USER,
    )
    assert auth.status == "pending" and auth.provider_id == "acme"
    assert (await client.health.check()).healthy is True


async def test_admin_connections(arcade: tuple[AsyncArcade, Any]) -> None:
    """admin.user_connections.list pages connections for a user; delete removes one."""
    client, engine = arcade
    auth = await client.auth.start(USER, "acme", scopes=["read"])
    await follow(engine, auth.url or "")
    page = await client.admin.user_connections.list(user={"id": USER})
    items = page.items
    assert len(items) == 1 and items[0].provider_id == "acme" and items[0].connection_status == "active"
    await client.admin.user_connections.delete(items[0].id or "")
    assert (await client.admin.user_connections.list(user={"id": USER})).items == []


async def test_errors_are_arcade_errors(arcade: tuple[AsyncArcade, Any]) -> None:
    """A bad request surfaces as arcadepy's BadRequestError / NotFoundError with our message."""
    import arcadepy

    client, _ = arcade
    with pytest.raises(arcadepy.NotFoundError):
        await client.auth.start(USER, "nope", scopes=[])
    bad = AsyncArcade(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(arcadepy.AuthenticationError):
        await bad.auth.start(USER, "acme", scopes=[])
    await bad.close()
