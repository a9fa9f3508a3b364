"""engine.login.starts: GET /login counted per client address, on a real engine with panva's oidc-provider."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from tests.plugins.login import login_yaml

pytestmark = pytest.mark.e2e


def audit_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]


async def test_starting_sign_ins_is_rate_limited_per_address(
    login_engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """GET /login counts toward security.rate_limiting.max_login_starts per address: over it, a 429 in the
    engine's error shape with Retry-After, no sign-in row written, audited rate_limited; a reload applies."""
    engine = await login_engine(rate_limiting="{max_login_starts: 2, window_minutes: 15}")
    browser = engine.new_browser()

    async def start() -> Any:
        async with browser.get(engine.url + "/login", allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.text()

    async def rows() -> int:
        async with engine.store.engine.connect() as conn:
            return int((await conn.execute(sa.text("SELECT count(*) FROM logins"))).scalar_one())

    assert [(await start())[0] for _ in range(2)] == [302, 302]
    assert await rows() == 2
    status, retry_after, text = await start()
    assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 15 * 60
    body = json.loads(text)
    assert body["error"] == "rate_limited" and body["code"] == 429 and "sign-ins" in body["msg"]
    assert await rows() == 2  # refused before anything is written
    events = [e for e in audit_events(capsys.readouterr().out) if e["event"] == "rate_limited"]
    assert events and events[-1]["reason"] == "login" and events[-1]["source_ip"] == "127.0.0.1"
    await engine.reconfigure(login_yaml(engine.op, rate_limiting="{max_login_starts: 5, window_minutes: 15}"))
    assert (await start())[0] == 302


async def test_disabled_rate_limiting_does_not_count_sign_ins(login_engine: Any) -> None:
    """With security.rate_limiting.enabled false, sign-ins are not limited."""
    engine = await login_engine(rate_limiting="{enabled: false, max_login_starts: 1}")
    browser = engine.new_browser()
    for _ in range(3):
        async with browser.get(engine.url + "/login", allow_redirects=False) as resp:
            assert resp.status == 302
