"""engine.api.services: audit and metrics wired into a running engine, seen from outside after a real flow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugins.mini_provider import USER, MiniProvider, acme_config


async def test_flow_moves_metrics_and_audits_without_secrets(
    keyturn_engine: Any, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flow shows in /metrics by provider and outcome; audit lines carry a user_ref, not the user id."""
    engine = await keyturn_engine(acme_config(mini_provider))
    capsys.readouterr()
    _, auth = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}},
    )
    async with engine.browser.get(auth["url"]) as resp:
        assert resp.status == 200
    async with engine.browser.get(engine.url + "/metrics") as resp:
        text = await resp.text()
    assert 'keyturn_auth_flows_total{outcome="completed",provider="acme"} 1.0' in text
    assert 'keyturn_http_requests_total{method="POST",route="/v1/auth/authorize",status="200"} 1.0' in text
    assert USER not in text
    out = capsys.readouterr().out
    audit = [json.loads(line) for line in out.splitlines() if '"keyturn.audit"' in line]
    events = [a["event"] for a in audit]
    assert "flow.started" in events and "flow.completed" in events
    assert all("user_ref" in a for a in audit if a["event"].startswith("flow."))
    assert USER not in out
    for token in mini_provider.issued:
        assert token not in out and token not in text
