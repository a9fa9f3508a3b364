"""RFC 6749 section 5: read a token endpoint's answer into a :class:`TokenSet` (no I/O here).

Quirks are read from the provider's schema, not from its name: a ``response_map`` finds values at
nested paths (Slack's ``authed_user.access_token``), ``success_field`` catches ``{"ok": false}``,
a form-encoded body (GitHub without ``Accept``) is understood, ``expires_in_unit`` converts
milliseconds. Errors never quote the answer's body, only its ``error`` word and description.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from engine import jsontext
from engine.errors import ProviderError
from engine.providers.schema import OAuth2Spec, RequestSpec

# bounded set of error kinds (metric label values)
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "invalid_token",
        "unsupported_token_type",
    }
)
RETRYABLE_ERRORS = frozenset({"server_error", "temporarily_unavailable", "slow_down"})
# a refresh that fails with one of these needs the user to authorize again
REAUTH_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client", "access_denied"})
MAX_EXPIRES_IN = 10 * 365 * 86400.0  # an announced lifetime longer than ten years is taken as ten years


@dataclasses.dataclass(frozen=True, repr=False)
class TokenSet:
    access_token: str
    token_type: str = "bearer"
    refresh_token: str | None = None
    id_token: str | None = None
    expires_in: float | None = None  # seconds
    scopes: tuple[str, ...] | None = None  # None: the answer did not say
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    subject: str | None = None  # the user's id when the token answer carries it (Slack)

    def __repr__(self) -> str:
        refresh = "yes" if self.refresh_token else "no"
        id_token = "yes" if self.id_token else "no"
        return (
            f"TokenSet(token_type={self.token_type!r}, expires_in={self.expires_in!r}, "
            f"scopes={self.scopes!r}, refresh_token={refresh}, id_token={id_token})"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenSet:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if values.get("scopes") is not None:
            values["scopes"] = tuple(values["scopes"])
        return cls(**values)


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path (``authed_user.access_token``; ``items.0.id`` indexes lists)."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is None:
            return None
    return current


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """JSON or form-encoded answer as a dict (raises ValueError when it is neither)."""
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in content_type or text.startswith("{"):
        data = jsontext.parse_peer(text)
        if not isinstance(data, dict):
            raise ValueError("a JSON object was expected")
        return data
    if "=" in text and "<" not in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    raise ValueError("neither JSON nor form-encoded")


def split_scopes(value: Any, delimiter: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if str(v))
    text = str(value)
    parts = text.split(delimiter) if delimiter and delimiter in text else re.split(r"[\s,]+", text)
    return tuple(p.strip() for p in parts if p.strip())


def _clean(text: Any, limit: int = 200) -> str:
    value = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    return value[:limit]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def raise_for_answer(
    what: str,
    status: int,
    data: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    request: RequestSpec | None = None,
) -> None:
    """Raise :class:`ProviderError` when the answer is an error (by status, ``error`` or success field)."""
    error: Any = None
    description: Any = None
    if data is not None:
        error = data.get("error")
        description = data.get("error_description") or data.get("message")
        if isinstance(error, Mapping):  # {"error": {"code": ..., "message": ...}}
            description = error.get("message") or description
            error = error.get("code") or error.get("type")
        field = request.success_field if request is not None else None
        if field and field in data and not data.get(field):
            error = error or "unsuccessful"
    if status == 429:
        raise ProviderError(
            f"{what}: rate limited by the provider",
            kind="rate_limited",
            retryable=True,
            retry_after=_retry_after(headers),
        )
    if status >= 500:
        raise ProviderError(
            f"{what}: provider answered HTTP {status}",
            kind="server_error",
            retryable=True,
            retry_after=_retry_after(headers),
        )
    if error:
        word = _clean(error, 64)
        kind = word if word in OAUTH_ERRORS else "oauth_error"
        detail = f": {_clean(description)}" if description else ""
        raise ProviderError(
            f"{what}: provider answered {word}{detail}", kind=kind, retryable=word in RETRYABLE_ERRORS
        )
    if status >= 400:
        raise ProviderError(f"{what}: provider answered HTTP {status}", kind="http_error")


def read_expires_in(raw: Any, unit: str = "seconds") -> float | None:
    """``expires_in`` as seconds: absent, non-numeric text, zero, negative, NaN or infinite → None
    (unknown: introspection or ``max_token_age`` decide); more than ``MAX_EXPIRES_IN`` is clamped.

    A strange lifetime never fails the answer: the provider has spent the code (or rotated the
    refresh token) already, so its tokens are kept.
    """
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    if unit == "milliseconds":
        value /= 1000
    if not math.isfinite(value) or value <= 0:
        return None
    return min(value, MAX_EXPIRES_IN)


def parse_token_answer(
    oauth2: OAuth2Spec,
    request: RequestSpec,
    *,
    status: int,
    content_type: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    what: str = "token request",
) -> TokenSet:
    """A token endpoint's answer as a TokenSet, or :class:`ProviderError`."""
    headers = headers or {}
    try:
        data: dict[str, Any] | None = decode_body(content_type, body)
    except ValueError:
        data = None
    raise_for_answer(what, status, data, headers, request)
    if not 200 <= status < 300:  # SECURITY.md 11: a 3xx (or 1xx) carrying tokens is not an answer
        raise ProviderError(f"{what}: provider answered HTTP {status}", kind="http_error")
    if data is None:
        raise ProviderError(f"{what}: the answer is neither JSON nor form-encoded", kind="bad_response")
    mapping = request.response_map

    def pick(name: str) -> Any:
        return get_path(data, mapping.get(name, name))

    access_token = pick("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderError(f"{what}: the answer has no access_token", kind="bad_response")
    expires_in = read_expires_in(pick("expires_in"), oauth2.expires_in_unit)
    refresh_token = pick("refresh_token")
    id_token = pick("id_token")
    token_type = pick("token_type")
    subject = pick("user_id") if "user_id" in mapping else None
    metadata = {name: get_path(data, path) for name, path in oauth2.token_metadata.items()}
    return TokenSet(
        access_token=access_token,
        token_type=str(token_type or "bearer"),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        expires_in=expires_in,
        scopes=split_scopes(pick("scope"), oauth2.scope_delimiter),
        metadata={k: v for k, v in metadata.items() if v is not None},
        subject=str(subject) if subject not in (None, "") else None,
    )
