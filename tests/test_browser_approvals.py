"""In a real browser (headless chromium): alice, signed in, approves a held call; bob's browser cannot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arcadepy import AsyncArcade

from tests.plugins.browser import OUTPUT
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.login import SESSION_COOKIE

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
SEND = {"recipient": "carol@example.com", "subject": "Q3", "body": "<b>numbers</b> attached"}
RULES = "tools:\n  approval:\n    - {tools: ['Gmail.SendEmail'], approver: user, ttl: 10m}\n"


async def test_alice_approves_in_the_browser_and_bob_cannot(
    login_engine: Any, toolkit_worker: Any, chromium_driver: Any
) -> None:
    """alice opens the approval link signed in, sees the tool and inputs, clicks Approve: the agent's
    wait ends and its retry runs once. bob's browser gets 'Unknown approval' and no buttons."""
    from selenium.webdriver.common.by import By

    worker = await toolkit_worker(mail=True)
    engine = await login_engine(extra=worker.yaml() + RULES)
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    driver = chromium_driver

    def run(fn: Any, *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    await run(driver.get, engine.url + "/connections")  # oidc-provider signs alice in without a form
    assert "Signed in as alice@example.test" in driver.find_element(By.TAG_NAME, "body").text
    held = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    auth = held.output.authorization
    waiting = asyncio.create_task(client.auth.wait_for_completion(auth))

    # bob, signed in in his own browser, sees nothing of alice's call
    token, _ = await engine.store.sessions.create("bob@example.test", 600)
    alice_cookies = driver.get_cookies()
    await run(driver.delete_all_cookies)
    driver.add_cookie({"name": SESSION_COOKIE, "value": token, "path": "/", "secure": True, "httpOnly": True})
    await run(driver.get, auth.url)
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "Unknown approval" in text and "signed in as bob@example.test" in text and "Gmail" not in text
    assert not driver.find_elements(By.ID, "approve")

    # alice's browser again
    await run(driver.delete_all_cookies)
    for cookie in alice_cookies:
        driver.add_cookie({k: cookie[k] for k in ("name", "value", "path", "secure", "httpOnly")})
    await run(driver.get, auth.url)
    assert "Gmail.SendEmail" in driver.find_element(By.TAG_NAME, "body").text
    inputs = driver.find_element(By.ID, "inputs").text
    assert "carol@example.com" in inputs and "<b>numbers</b> attached" in inputs  # shown as text
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "approval.png"
    await run(driver.save_screenshot, str(shot))
    print(f"screenshot of the approval page: {shot}")
    assert not waiting.done() and await worker.runs() == {}
    await run(driver.find_element(By.CSS_SELECTOR, "#approve button").click)
    await run(lambda: driver.find_element(By.CLASS_NAME, "notice"))
    assert driver.current_url == f"{engine.url}/approvals/{auth.id}?notice=approved"
    assert "You approved this call." in driver.find_element(By.TAG_NAME, "body").text
    assert (await asyncio.wait_for(waiting, 10)).status == "completed"

    ran = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    assert ran.success is True and ran.output.value["sent_to"] == "carol@example.com"
    again = await client.tools.execute(tool_name="Gmail.SendEmail", input=SEND, user_id=ALICE)
    assert again.success is False and await worker.runs() == {"Gmail.SendEmail": 1}
    await client.close()
