"""Browser pages: escaping and security headers (SECURITY 7)."""

from __future__ import annotations

import base64
import hashlib
import re

from engine.api.pages import render_page
from engine.config.model import Branding


def test_provider_strings_are_escaped() -> None:
    """A provider's error_description cannot inject markup."""
    evil = '<script>alert("x")</script>'
    resp = render_page("failure", Branding(), message="The provider said no.", detail=evil)
    assert resp.text is not None
    assert "<script>" not in resp.text
    assert "&lt;script&gt;" in resp.text


def test_headers_and_csp_hash_matches_the_style() -> None:
    """Pages send no-referrer, no-store, and a CSP naming no origin whose hash allows the style."""
    resp = render_page("success", Branding(name="Acme", primary_color="#ff0000"), message="ok")
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    csp = resp.headers["Content-Security-Policy"]
    assert "http" not in csp and "default-src 'none'" in csp
    assert resp.text is not None
    style = re.search(r"<style>(.*?)</style>", resp.text, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "#ff0000" in style.group(1)


def test_bad_color_and_remote_logo_are_not_used() -> None:
    """A branding colour that is not a hex colour, or a logo that is not a data URL, is not rendered."""
    resp = render_page(
        "expired", Branding(primary_color="red;}body{x", logo_url="https://cdn.example/logo.png"), message="m"
    )
    assert resp.text is not None
    assert "cdn.example" not in resp.text and "red;}" not in resp.text
    assert resp.status == 410


def test_next_uri_link_is_escaped() -> None:
    """The continue link's href is attribute-escaped."""
    resp = render_page("success", Branding(), message="m", next_uri='https://app.example/?a="b"')
    assert resp.text is not None
    assert 'href="https://app.example/?a=&quot;b&quot;"' in resp.text
