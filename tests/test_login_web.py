"""engine.login.web: where next may lead, CSRF tokens per session, cookie names and flags."""

from __future__ import annotations

import pytest
from aiohttp import web

from engine.login.web import SESSION, CookiePolicy, csrf_ok, csrf_token, safe_next


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "connections",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "/%5cevil.example",
        "/%2f/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/ok\nLocation: https://evil.example",
        "/ok\x00",
        "/ok%0d%0aSet-Cookie:x",
        "/ok#frag",
        "/" + "a" * 2000,
    ],
)
def test_unsafe_next_becomes_connections(value: str | None) -> None:
    """Absolute URLs, protocol-relative and backslash tricks, control characters: /connections instead."""
    assert safe_next(value) == "/connections"


@pytest.mark.parametrize(
    "value", ["/connections", "/login/verify?flow_id=fl_abc-_1", "/connections?notice=x"]
)
def test_own_paths_are_kept(value: str) -> None:
    """A path of this engine (with a query) is kept as it is."""
    assert safe_next(value) == value


def test_csrf_token_differs_per_session_and_checks_in_constant_form() -> None:
    """Each session has its own token; another session's, an empty or a non-string one is refused."""
    a, b = csrf_token("session-a"), csrf_token("session-b")
    assert a != b and len(a) == 43
    assert csrf_ok("session-a", a)
    assert not csrf_ok("session-a", b) and not csrf_ok("session-a", "") and not csrf_ok("session-a", None)


def _cookie_header(policy: CookiePolicy) -> str:
    response = web.Response()
    policy.set(response, SESSION, "v", max_age=60)
    return str(response.cookies[policy.name(SESSION)].OutputString())


def test_cookie_flags_on_https_and_loopback() -> None:
    """https and loopback public_urls: __Host- name, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain."""
    for url in ("https://keyturn.example", "http://127.0.0.1:9099", "http://localhost:8080"):
        policy = CookiePolicy.for_url(url)
        header = _cookie_header(policy)
        assert header.startswith("__Host-keyturn_session=v;"), url
        lowered = header.lower()
        assert "secure" in lowered and "httponly" in lowered and "samesite=lax" in lowered
        assert "path=/" in lowered and "domain" not in lowered


def test_plain_http_off_loopback_drops_secure_and_the_prefix() -> None:
    """A development public_url on plain http off loopback: keyturn_session without Secure."""
    header = _cookie_header(CookiePolicy.for_url("http://dev.internal:9099"))
    assert header.startswith("keyturn_session=v;") and "secure" not in header.lower()
    assert "httponly" in header.lower()
