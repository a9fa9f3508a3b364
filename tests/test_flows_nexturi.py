"""next_uri allowlist matching (no open redirect)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import BadRequest
from engine.flows.nexturi import check_next_uri, next_uri_allowed
from tests.plugins.mini_provider import MiniProvider, acme_config

ALLOW = ["https://app.example/", "https://other.example/done"]


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/",
        "https://app.example/after/auth?x=1",
        "https://other.example/done",
        "https://other.example/done/sub",
        "https://APP.example:443/x",
    ],
)
def test_allowed(uri: str) -> None:
    """URIs under an allowlisted origin and path prefix are accepted."""
    assert next_uri_allowed(uri, ALLOW)


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/",
        "http://app.example/",
        "https://app.example.evil.example/",
        "https://app.example@evil.example/",
        "https://other.example/donexyz",
        "https://other.example/",
        "javascript:alert(1)",
        "//evil.example/",
        "https://app.example:8443/",
        "https://app.example\\@evil.example/",
    ],
)
def test_refused(uri: str) -> None:
    """Other hosts, schemes, ports, userinfo tricks and sibling paths are refused."""
    assert not next_uri_allowed(uri, ALLOW)


def test_check_next_uri_raises_a_named_error() -> None:
    """A refused next_uri is a 400 with error word next_uri_not_allowed."""
    with pytest.raises(BadRequest) as info:
        check_next_uri("https://evil.example/", ALLOW)
    assert info.value.error == "next_uri_not_allowed"
    assert check_next_uri(None, ALLOW) is None


MALFORMED = [
    "https://app.example:99999/",
    "https://app.example:abc/",
    "https://app.example:-1/",
    "https://[::1/",
    "https://[zz]/",
    "https://app.example/\x00",
    "https://app.example/a\x01b",
    "https://app.example/\x7f",
    "https://app.example/a b",
    "https://app.example/" + "a" * 3000,
]


@pytest.mark.parametrize("uri", MALFORMED)
def test_malformed_is_refused_not_raised(uri: str) -> None:
    """A bad port, a broken IPv6 host, NUL or another control character: refused, never ValueError."""
    assert not next_uri_allowed(uri, ALLOW)
    with pytest.raises(BadRequest) as info:
        check_next_uri(uri, ALLOW)
    assert "next_uri" in info.value.msg and info.value.status == 400


def test_a_malformed_allowlist_entry_is_skipped() -> None:
    """A broken allowlist entry matches nothing and does not stop the others."""
    assert next_uri_allowed("https://app.example/x", ["https://bad:99999/", "https://app.example/"])


async def test_routes_answer_400_naming_next_uri(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any
) -> None:
    """Both authorize routes answer each malformed next_uri with 400 JSON naming next_uri."""
    worker = await echo_worker(mini_provider.url("/userinfo"))
    engine = await keyturn_engine(acme_config(mini_provider, extra=worker.yaml()))
    for uri in MALFORMED:
        for route, body in (
            (
                "/v1/auth/authorize",
                {"auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["a"]}}},
            ),
            ("/v1/tools/authorize", {"tool_name": "Echo.WhoAmI"}),
        ):
            status, answer = await engine.api("POST", route, json={"user_id": "u1", "next_uri": uri, **body})
            assert status == 400, (route, uri, answer)
            assert set(answer) == {"code", "error", "msg"} and "next_uri" in answer["msg"], answer
