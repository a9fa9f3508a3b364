"""engine.webhooks.signing: bodies and headers that the standardwebhooks library verifies."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from engine.config.webhooks import secret_bytes
from engine.webhooks import signing
from tests.plugins.webhook_receiver import SECRET


def test_signed_headers_verify_with_the_library() -> None:
    """The library accepts our signature and returns the body {id, type, created_at, data}."""
    created = datetime(2026, 7, 28, 12, 0, 0, 123000, tzinfo=UTC)
    body = signing.body("evt_1", "connection.created", created, {"user_id": "ann", "provider": "gh"})
    headers = signing.headers(secret_bytes(SECRET), "evt_1", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers) == {
        "id": "evt_1", "type": "connection.created", "created_at": "2026-07-28T12:00:00.123Z",
        "data": {"user_id": "ann", "provider": "gh"},
    }  # fmt: skip
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"] == "evt_1"


def test_a_changed_body_or_another_secret_fails_verification() -> None:
    """One changed byte, or a signature made with another secret, is refused by the library."""
    body = signing.body("evt_2", "flow.failed", datetime.now(UTC), {"reason": "access_denied"})
    headers = signing.headers(secret_bytes(SECRET), "evt_2", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace("access_denied", "access_granted"), headers)
    other = "whsec_" + "QUJD" * 8
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    assert json.loads(body)["type"] == "flow.failed"
