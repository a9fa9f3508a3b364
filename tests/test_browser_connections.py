"""In a real browser (headless chromium): sign in at oidc-provider, see a connection, disconnect it."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from tests.plugins.browser import OUTPUT
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"


async def _active_at_provider(op: Any, token: str) -> bool:
    basic = base64.b64encode(f"{op.client_id}:{op.client_secret}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            op.issuer + "/token/introspection",
            headers={"Authorization": f"Basic {basic}"},
            data={"token": token},
        ) as resp,
    ):
        return bool((await resp.json())["active"])


async def test_sign_in_see_and_disconnect_a_connection(login_engine: Any, chromium_driver: Any) -> None:
    """alice signs in, connects, sees it on /connections, disconnects: gone here and revoked there."""
    from selenium.webdriver.common.by import By

    engine = await login_engine()
    driver = chromium_driver

    def run(fn: Any, *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    # sign in (oidc-provider logs alice in without a form) and land on /connections
    await run(driver.get, engine.url + "/connections")
    assert driver.current_url == engine.url + "/connections", driver.current_url
    assert "Signed in as alice@example.test" in driver.find_element(By.TAG_NAME, "body").text
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session_cookie = cookies["__Host-keyturn_session"]
    assert session_cookie["httpOnly"] and session_cookie["secure"] and session_cookie["sameSite"] == "Lax"
    # an app starts a flow for alice; she opens the link in the same browser and comes back connected
    body = {"user_id": ALICE, "auth_requirement": {"id": "op", "oauth2": {"scopes": ["email"]}}}
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    await run(driver.get, auth["url"])
    assert driver.current_url == engine.url + "/connections?notice=connected", driver.current_url
    grant = await engine.store.grants.find(ALICE, "op")
    remember(grant.access_token)
    remember(grant.refresh_token)
    item = driver.find_element(By.ID, grant.id)
    assert "Example Docs" in item.text and "Active" in item.text and "email" in item.text
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "connections.png"
    await run(driver.save_screenshot, str(shot))
    print(f"screenshot of /connections: {shot}")
    assert shot.stat().st_size > 1000
    assert await _active_at_provider(engine.op, grant.refresh_token)
    # Disconnect: a plain HTML form post with the session's CSRF token
    button = item.find_element(By.XPATH, ".//form[contains(@action,'/disconnect')]//button")
    await run(button.click)
    await run(lambda: driver.find_element(By.CLASS_NAME, "notice"))
    assert driver.current_url == engine.url + "/connections?notice=disconnected"
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "revoked at the provider" in text and "Example Docs" not in text
    assert await engine.store.grants.get(grant.id) is None
    assert not await _active_at_provider(engine.op, grant.refresh_token)
    assert not await _active_at_provider(engine.op, grant.access_token)
