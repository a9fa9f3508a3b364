"""Checks of ``webhooks[]``: unique ids, an http(s) URL, a Standard Webhooks secret, known event types.

The event types are the one list both the config and the deliverer (``engine.webhooks``) use.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

from engine.config.convert import Context, field_line
from engine.config.model import Config
from engine.net import is_loopback_host

WEBHOOK_EVENTS: tuple[str, ...] = (
    "connection.created",
    "connection.reauthorized",
    "connection.needs_reauth",
    "connection.revoked",
    "connection.refresh_failing",
    "connection.recovered",
    "flow.failed",
    "approval.requested",
)
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def secret_bytes(value: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (standard base64 after the prefix); ValueError when malformed."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX} followed by base64 (Standard Webhooks)")
    body = value[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX} followed by standard base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must hold at least {MIN_SECRET_BYTES} bytes after {SECRET_PREFIX} (24 to 64 advised)"
        )
    return key


def check_webhooks(config: Config, data: Any, ctx: Context, *, allow_http: bool) -> None:
    """Raise a ConfigError naming ``webhooks[i].key`` for the first problem found."""
    raw = data.get("webhooks") if hasattr(data, "get") else None
    seen: set[str] = set()
    for i, hook in enumerate(config.webhooks):
        path = f"webhooks[{i}]"
        line = field_line(raw, i) if raw is not None else None
        if not _ID.match(hook.id):
            raise ctx.error("must be a short word (letters, digits, - _ .)", f"{path}.id", line)
        if hook.id in seen:
            raise ctx.error(f"duplicate webhook id {hook.id!r}", f"{path}.id", line)
        seen.add(hook.id)
        _check_url(hook.url, f"{path}.url", line, ctx, allow_http=allow_http)
        if not hook.secret:
            raise ctx.error(
                "is required: whsec_ followed by base64 of 24 to 64 random bytes", f"{path}.secret", line
            )
        try:
            secret_bytes(hook.secret)
        except ValueError as exc:
            raise ctx.error(str(exc), f"{path}.secret", line) from None
        if not hook.events:
            raise ctx.error(f"name at least one event of {', '.join(WEBHOOK_EVENTS)}", f"{path}.events", line)
        for j, name in enumerate(hook.events):
            if name not in WEBHOOK_EVENTS:
                raise ctx.error(
                    f"unknown event {name!r}; known: {', '.join(WEBHOOK_EVENTS)}", f"{path}.events[{j}]", line
                )
        retry = hook.retry
        if retry.initial <= 0 or retry.max < retry.initial:
            raise ctx.error("initial must be above 0 and max at least initial", f"{path}.retry", line)
        if hook.timeout <= 0:
            raise ctx.error("must be above 0", f"{path}.timeout", line)


def _check_url(url: str, path: str, line: int | None, ctx: Context, *, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ctx.error(f"must be an absolute http(s) URL, got {url!r}", path, line)
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        raise ctx.error(
            f"must use https (http only for loopback hosts or with api.development: true), got {url!r}",
            path,
            line,
        )
