"""engine.oauth.tokens: reading token endpoint answers, provider quirks as data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import ProviderError
from engine.oauth.tokens import MAX_EXPIRES_IN, TokenSet, get_path, parse_token_answer, split_scopes
from engine.providers.schema import OAuth2Spec, RequestSpec

SPEC = OAuth2Spec()
REQ = RequestSpec(endpoint="https://p.example/token")


def parse(
    body: object,
    *,
    status: int = 200,
    ctype: str = "application/json",
    spec: OAuth2Spec = SPEC,
    req: RequestSpec = REQ,
    headers: dict[str, str] | None = None,
) -> TokenSet:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_answer(spec, req, status=status, content_type=ctype, body=raw, headers=headers)


def test_plain_json_answer() -> None:
    """A standard JSON answer gives token, type, expiry, refresh token and scopes."""
    ts = parse(
        {
            "access_token": "at1",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt1",
            "scope": "read write",
        }
    )
    assert (ts.access_token, ts.refresh_token, ts.expires_in, ts.scopes) == (
        "at1",
        "rt1",
        3600,
        ("read", "write"),
    )


def test_github_form_encoded() -> None:
    """GitHub's form-encoded answer is understood, with comma-separated scopes."""
    ts = parse(
        b"access_token=gho_x&scope=repo%2Cgist&token_type=bearer", ctype="application/x-www-form-urlencoded"
    )
    assert ts.access_token == "gho_x" and ts.scopes == ("repo", "gist")


def test_github_error_in_200() -> None:
    """An error word in a 200 answer is an error (GitHub answers bad_verification_code with 200)."""
    with pytest.raises(ProviderError) as info:
        parse({"error": "bad_verification_code", "error_description": "The code passed is incorrect"})
    assert info.value.kind == "oauth_error" and "bad_verification_code" in info.value.msg


def test_slack_nested_and_ok_false() -> None:
    """Slack's nested user token is found by response_map and ok: false is an error."""
    req = RequestSpec(
        endpoint="https://slack.com/api/oauth.v2.access",
        success_field="ok",
        response_map={
            "access_token": "authed_user.access_token",
            "scope": "authed_user.scope",
            "user_id": "authed_user.id",
            "token_type": "authed_user.token_type",
        },
    )
    spec = OAuth2Spec(scope_delimiter=",", token_metadata={"team": "team.id"})
    ts = parse(
        {
            "ok": True,
            "team": {"id": "T1"},
            "authed_user": {
                "id": "U1",
                "scope": "chat:write,users:read",
                "access_token": "xoxp-1",
                "token_type": "user",
            },
        },
        spec=spec,
        req=req,
    )
    assert ts.access_token == "xoxp-1" and ts.subject == "U1"
    assert ts.scopes == ("chat:write", "users:read") and ts.metadata == {"team": "T1"}
    with pytest.raises(ProviderError, match="invalid_code"):
        parse({"ok": False, "error": "invalid_code"}, spec=spec, req=req)


def test_invalid_grant_kind() -> None:
    """invalid_grant is reported with its own kind and not retryable."""
    with pytest.raises(ProviderError) as info:
        parse({"error": "invalid_grant"}, status=400)
    assert info.value.kind == "invalid_grant" and not info.value.retryable


def test_server_error_and_429_retryable() -> None:
    """5xx and 429 are retryable; Retry-After is read."""
    with pytest.raises(ProviderError) as info:
        parse(b"<html>oops</html>", status=503, ctype="text/html")
    assert info.value.retryable and info.value.kind == "server_error"
    with pytest.raises(ProviderError) as info:
        parse({}, status=429, headers={"Retry-After": "7"})
    assert info.value.kind == "rate_limited" and info.value.retry_after == 7


def test_error_message_never_quotes_body() -> None:
    """An answer without access_token is bad_response and its body is not echoed."""
    with pytest.raises(ProviderError) as info:
        parse({"refresh_token": "secret-rt-value"})
    assert "secret-rt-value" not in str(info.value) and info.value.kind == "bad_response"


def test_expires_in_units_and_strings() -> None:
    """expires_in as a string and in milliseconds converts to seconds; 0 means unknown."""
    assert parse({"access_token": "a", "expires_in": "120"}).expires_in == 120
    ms = OAuth2Spec(expires_in_unit="milliseconds")
    assert parse({"access_token": "a", "expires_in": 5000}, spec=ms).expires_in == 5
    assert parse({"access_token": "a", "expires_in": 0}).expires_in is None
    assert parse({"access_token": "a", "expires_in": "soon"}).expires_in is None  # unknown, not a failure


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (float("nan"), None),
        (float("inf"), None),
        (-5, None),
        ("-5", None),
        ("NaN", None),
        (True, None),
        ([3600], None),
        ({"s": 1}, None),
        (1e20, MAX_EXPIRES_IN),
        ("1e400", None),
        (" 120 ", 120.0),
    ],
)
def test_strange_expires_in_is_unknown_or_clamped(raw: Any, expected: float | None) -> None:
    """A non-finite, negative or non-numeric expires_in is unknown; one above ten years is ten years."""
    assert parse({"access_token": "a", "refresh_token": "r", "expires_in": raw}).expires_in == expected


@pytest.mark.parametrize("status", [302, 301, 304, 100])
def test_non_2xx_answer_with_tokens_is_refused(status: int) -> None:
    """A token answer with a non-2xx status is refused even when its body holds tokens (SECURITY.md 11)."""
    with pytest.raises(ProviderError) as info:
        parse({"access_token": "a", "token_type": "Bearer"}, status=status)
    assert info.value.kind == "http_error" and str(status) in info.value.msg


def test_metadata_kept() -> None:
    """token_metadata paths keep non-secret values (Salesforce instance_url)."""
    spec = OAuth2Spec(token_metadata={"instance_url": "instance_url"})
    ts = parse({"access_token": "a", "instance_url": "https://x.my.salesforce.com"}, spec=spec)
    assert ts.metadata == {"instance_url": "https://x.my.salesforce.com"}


def test_repr_hides_tokens() -> None:
    """TokenSet's repr shows no token value."""
    ts = TokenSet(access_token="AT-secret", refresh_token="RT-secret", id_token="ID-secret")
    assert "secret" not in repr(ts)
    assert TokenSet.from_json(ts.to_json()) == ts


def test_helpers() -> None:
    """get_path walks dicts and lists; split_scopes reads lists and delimited strings."""
    assert get_path({"a": [{"b": 1}]}, "a.0.b") == 1
    assert get_path({"a": 1}, "a.b") is None
    assert split_scopes(["a", "b"], " ") == ("a", "b")
    assert split_scopes("a b", ",") == ("a", "b")
    assert split_scopes(None, " ") is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"access_token": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"access_token": "a", "n": 1' + b"0" * 5000 + b"}",
    ],
    ids=["nested", "long-number"],
)
def test_hostile_json_answer_is_a_provider_error(raw: bytes) -> None:
    """A token answer nested 100,000 deep or with a 5,000-digit number is a ProviderError, not a crash."""
    with pytest.raises(ProviderError):
        parse(raw)
