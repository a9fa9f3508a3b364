"""next_uri allowlist matching (no open redirect)."""

from __future__ import annotations

import pytest

from engine.errors import BadRequest
from engine.flows.nexturi import check_next_uri, next_uri_allowed

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
