"""Standard Webhooks: the body, and the ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``
headers (``v1,`` + base64 of HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` with the secret's bytes).

A receiver verifies with any Standard Webhooks library (``standardwebhooks.Webhook(secret).verify``).
The body is ``{id, type, created_at, data}``; ``id`` is the event's, the same for every endpoint and
every retry, so a receiver can drop duplicates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine import __version__


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(event_id: str, type: str, created_at: datetime, data: Mapping[str, Any]) -> str:
    return json.dumps(
        {"id": event_id, "type": type, "created_at": iso(created_at), "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def signature(key: bytes, msg_id: str, timestamp: int, payload: str) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{payload}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(key: bytes, msg_id: str, timestamp: int, payload: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"Keyturn-Webhooks/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, payload),
    }
