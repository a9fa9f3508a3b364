"""The small pages a user's browser sees: success, failure, expired, waiting for the app to confirm.

Every provider-supplied string is escaped; pages send ``Referrer-Policy: no-referrer``, ``Cache-Control:
no-store`` and a CSP that allows no origin at all (the style is allowed by its hash, images only as
``data:`` URLs, so a branding logo must be a data URL).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from typing import Literal

from aiohttp import web

from engine.config.model import Branding

PageKind = Literal["success", "failure", "expired", "verifying", "not_found"]

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f8fa;color:#1f2328;"
    "display:flex;min-height:100vh;align-items:center;justify-content:center;margin:0}"
    "main{background:#fff;border:1px solid #d0d7de;border-radius:12px;padding:2rem 2.5rem;max-width:32rem}"
    "h1{font-size:1.35rem;margin:.2rem 0 1rem}p{line-height:1.5}"
    ".brand{font-weight:600;color:BRAND}.detail{color:#57606a;font-size:.9rem;word-break:break-word}"
    "a.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;border-radius:6px;"
    "background:BRAND;color:#fff;text-decoration:none}img{max-height:40px}"
)

_TITLES: dict[PageKind, str] = {
    "success": "You're connected",
    "failure": "Authorization failed",
    "expired": "This link has expired",
    "verifying": "Almost there",
    "not_found": "Unknown authorization link",
}

_STATUS: dict[PageKind, int] = {
    "success": 200,
    "failure": 400,
    "expired": 410,
    "verifying": 200,
    "not_found": 404,
}


def _color(value: str) -> str:
    v = value.strip()
    ok = v.startswith("#") and len(v) in (4, 7) and all(c in "0123456789abcdefABCDEF" for c in v[1:])
    return v if ok else "#1f6feb"


@functools.lru_cache(maxsize=32)
def _style_and_csp(color: str) -> tuple[str, str]:
    style = _STYLE.replace("BRAND", color)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return style, csp


def page_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def render_page(
    kind: PageKind,
    branding: Branding,
    *,
    message: str,
    detail: str | None = None,
    next_uri: str | None = None,
    status: int | None = None,
) -> web.Response:
    """A complete page; ``message``/``detail`` may come from a provider and are escaped here."""
    e = html.escape
    style, csp = _style_and_csp(_color(branding.primary_color))
    logo = ""
    if branding.logo_url and branding.logo_url.startswith("data:image/"):
        logo = f'<img alt="" src="{e(branding.logo_url, quote=True)}">'
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        '<meta name=referrer content="no-referrer">',
        f"<title>{e(_TITLES[kind])} - {e(branding.name)}</title>",
        f"<style>{style}</style></head><body><main>",
        f"{logo}<div class=brand>{e(branding.name)}</div><h1>{e(_TITLES[kind])}</h1>",
        f"<p>{e(message)}</p>",
    ]
    if detail:
        parts.append(f"<p class=detail>{e(detail)}</p>")
    if next_uri:
        parts.append(f'<a class=button href="{e(next_uri, quote=True)}">Continue</a>')
    parts.append("</main></body></html>")
    return web.Response(
        text="".join(parts),
        status=status or _STATUS[kind],
        content_type="text/html",
        charset="utf-8",
        headers=page_headers(csp),
    )
