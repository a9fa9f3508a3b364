"""The signed-in person's pages: ``/connections`` and the small sign-in pages (no JavaScript).

Same headers as the flow pages (``engine.api.pages``) and a CSP that allows no origin at all except
``form-action 'self'``, so the Disconnect, Reconnect and Sign-out forms can post. Every string that
comes from a provider or a user is escaped. The layout is one column that fits a phone.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from engine.api.pages import page_headers
from engine.config.model import Branding
from engine.store.grants import default_ids

_STYLE = (
    "*{box-sizing:border-box}body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;"
    "background:#f6f8fa;color:#1f2328;margin:0;padding:1rem}"
    "main{background:#fff;border:1px solid #d0d7de;border-radius:12px;padding:1.25rem;max-width:40rem;"
    "margin:0 auto}h1{font-size:1.3rem;margin:.2rem 0 1rem}p{line-height:1.5}"
    "header{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between}"
    ".brand{font-weight:600;color:BRAND}.who{color:#57606a;font-size:.9rem;word-break:break-all}"
    "img{max-height:32px}ul{list-style:none;padding:0;margin:0}"
    "li.grant{border:1px solid #d0d7de;border-radius:8px;padding:.75rem 1rem;margin:.75rem 0}"
    ".name{font-weight:600;font-size:1.05rem}.meta{color:#57606a;font-size:.9rem;word-break:break-word;"
    "margin:.25rem 0}.status{display:inline-block;font-size:.8rem;padding:.1rem .5rem;border-radius:1rem;"
    "background:#dafbe1;color:#116329}.status.needs_reauth{background:#fff8c5;color:#7d4e00}"
    ".status.revoked{background:#ffebe9;color:#a40e26}.status.none{background:#eaeef2;color:#57606a}"
    ".status.default{background:#ddf4ff;color:#0969da}"
    "form{display:inline}"
    "button,a.button{font:inherit;margin:.5rem .5rem 0 0;padding:.45rem .9rem;border-radius:6px;"
    "border:1px solid #d0d7de;background:#f6f8fa;color:#1f2328;cursor:pointer;text-decoration:none;"
    "display:inline-block}button.primary,a.button{background:BRAND;border-color:BRAND;color:#fff}"
    ".notice{background:#ddf4ff;border-radius:6px;padding:.5rem .75rem}"
    ".error{background:#ffebe9;color:#a40e26;border-radius:6px;padding:.5rem .75rem}"
    "label{display:block;font-weight:600;margin:.75rem 0 .25rem}input.field{font:inherit;width:100%;"
    "padding:.45rem .6rem;border:1px solid #d0d7de;border-radius:6px}form.key{display:block}"
)

STATUS_TEXT = {"active": "Active", "needs_reauth": "Needs re-authorization", "revoked": "Revoked"}
NOTICES = {
    "disconnected": "The connection was disconnected and revoked at the provider.",
    "disconnect_pending": "The connection is disconnected; revoking it at the provider will be retried.",
    "connected": "The connection is active.",
    "default": "The default account was changed.",
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
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return style, csp


def page(
    branding: Branding,
    title: str,
    body: str,
    *,
    status: int = 200,
    who: str | None = None,
    csrf: str | None = None,
    head: str = "",
    form_targets: str = "",
    base: str = "",
) -> web.Response:
    """A complete page around ``body`` (already escaped HTML); with ``who``, a Sign-out form too.

    ``form_targets``: origins a form may lead to beyond this one (a consent form's redirect). ``base``:
    the path of ``api.public_url`` (``Settings.base_path``), before every link and form action here.
    """
    e = html.escape
    style, csp = _style_and_csp(_color(branding.primary_color))
    if form_targets:
        csp = csp.replace("form-action 'self'", f"form-action 'self' {form_targets}")
    logo = ""
    if branding.logo_url and branding.logo_url.startswith("data:image/"):
        logo = f'<img alt="" src="{e(branding.logo_url, quote=True)}"> '
    account = ""
    if who is not None and csrf is not None:
        account = (
            f'<div class=who>Signed in as {e(who)} <form method=post action="{e(base, quote=True)}/logout">'
            f'<input type=hidden name=csrf_token value="{e(csrf, quote=True)}">'
            "<button type=submit>Sign out</button></form></div>"
        )
    text = "".join(
        (
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            '<meta name=viewport content="width=device-width,initial-scale=1">',
            '<meta name=referrer content="no-referrer">',
            head,
            f"<title>{e(title)} - {e(branding.name)}</title>",
            f"<style>{style}</style></head><body><main>",
            f"<header><div class=brand>{logo}{e(branding.name)}</div>{account}</header>",
            f"<h1>{e(title)}</h1>",
            body,
            "</main></body></html>",
        )
    )
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=page_headers(csp)
    )


def message(
    branding: Branding,
    title: str,
    text: str,
    *,
    status: int = 200,
    link: tuple[str, str] | None = None,
    base: str = "",
) -> web.Response:
    """A short page; ``link`` is ``(engine path, label)``, linked under ``base`` (``Settings.base_path``)."""
    e = html.escape
    body = f"<p>{e(text)}</p>"
    if link is not None:
        body += f'<a class=button href="{e(base + link[0], quote=True)}">{e(link[1])}</a>'
    return page(branding, title, body, status=status, base=base)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def account_of(grant: Any) -> str:
    info: Mapping[str, Any] = grant.user_info or {}
    for key in ("email", "preferred_username", "login", "username", "name"):
        value = info.get(key)
        if isinstance(value, str) and value:
            return value
    return str(grant.subject or "default")


def account_label(grant: Any) -> str:
    """Who the person is at the provider, and the account's name when it is not ``default``."""
    who = account_of(grant)
    name = getattr(grant, "account", "default")
    return who if name in ("default", who) else f"{name} ({who})"


def _form(action: str, label: str, csrf: str, *, primary: bool = False) -> str:
    e = html.escape
    cls = " class=primary" if primary else ""
    return (
        f'<form method=post action="{e(action, quote=True)}">'
        f'<input type=hidden name=csrf_token value="{e(csrf, quote=True)}">'
        f"<button type=submit{cls}>{e(label)}</button></form>"
    )


def connections(
    branding: Branding,
    *,
    who: str,
    csrf: str,
    grants: Sequence[Any],
    names: Mapping[str, str],
    notice: str | None = None,
    base: str = "",
) -> web.Response:
    """The list of the person's grants with Disconnect (and Reconnect for ``needs_reauth``).

    A provider with several of the person's accounts shows which one is the default (used when an
    app names none) and a Make default button on the others.
    """
    e = html.escape
    defaults = default_ids(grants)
    several = Counter(g.provider_id for g in grants)
    parts: list[str] = []
    if notice in NOTICES:
        parts.append(f"<p class=notice>{e(NOTICES[notice])}</p>")
    if not grants:
        parts.append("<p>You have no connections yet. They appear here after you authorize an app.</p>")
    parts.append("<ul>")
    for g in grants:
        name = names.get(g.provider_id, g.provider_id)
        status = g.status if g.status in STATUS_TEXT else "revoked"
        buttons = ""
        badge = ""
        if several[g.provider_id] > 1 and g.id in defaults:
            badge = " <span class='status default'>Default</span>"
        elif several[g.provider_id] > 1:
            buttons += _form(f"{base}/connections/{g.id}/default", "Make default", csrf)
        if status == "needs_reauth":
            buttons += _form(f"{base}/connections/{g.id}/reconnect", "Reconnect", csrf, primary=True)
        if status != "revoked":
            buttons += _form(f"{base}/connections/{g.id}/disconnect", "Disconnect", csrf)
        parts.append(
            f'<li class=grant id="{e(g.id, quote=True)}"><div class=name>{e(name)} '
            f"<span class='status {status}'>{e(STATUS_TEXT[status])}</span>{badge}</div>"
            f"<div class=meta>Account: {e(account_label(g))}</div>"
            f"<div class=meta>Scopes: {e(' '.join(g.scopes) or '-')}</div>"
            f"<div class=meta>Connected {e(_when(g.created_at))}; "
            f"last refreshed {e(_when(g.refreshed_at))}</div>{buttons}</li>"
        )
    parts.append("</ul>")
    return page(branding, "Your connections", "".join(parts), who=who, csrf=csrf, base=base)


def continue_to(branding: Branding, url: str, provider_name: str) -> web.Response:
    """After Reconnect: go on to the provider (a link, and a refresh for browsers that follow it)."""
    e = html.escape
    head = f'<meta http-equiv=refresh content="0;url={e(url, quote=True)}">'
    body = (
        f"<p>Sign in at {e(provider_name)} to reconnect.</p>"
        f'<a class=button href="{e(url, quote=True)}">Continue to {e(provider_name)}</a>'
    )
    return page(branding, "Reconnect", body, head=head)


CONNECT_STATES = {
    "active": ("Connected", "active"),
    "needs_reauth": ("Needs reconnecting", "needs_reauth"),
    "none": ("Not connected", "none"),
}


def connect(
    branding: Branding,
    *,
    user: str,
    action: str,
    csrf: str,
    providers: Sequence[tuple[str, str, str]],
    next_uri: str | None,
    expires: datetime,
    who: str | None = None,
    session_csrf: str | None = None,
    base: str = "",
) -> web.Response:
    """A connect link's page: each ``(provider id, name, state)`` with a Connect (or Reconnect) button.

    ``state`` is ``active``, ``needs_reauth`` or ``none``; each button posts to ``{action}/{provider id}``
    (``action`` is already under ``base``, which the Sign-out form uses).
    """
    e = html.escape
    parts = [
        f"<p>Connect your accounts for <strong>{e(user)}</strong>. "
        f"This link works until {e(_when(expires))}.</p>",
        "<ul>",
    ]
    for pid, name, state in providers:
        text, css = CONNECT_STATES.get(state, CONNECT_STATES["none"])
        button = ""
        if state != "active":
            label = "Reconnect" if state == "needs_reauth" else "Connect"
            button = _form(f"{action}/{pid}", label, csrf, primary=True)
        parts.append(
            f'<li class=grant id="{e(pid, quote=True)}"><div class=name>{e(name)} '
            f"<span class='status {css}'>{e(text)}</span></div>{button}</li>"
        )
    parts.append("</ul>")
    if next_uri:
        parts.append(f'<a class=button href="{e(next_uri, quote=True)}">Done</a>')
    return page(branding, "Connect your accounts", "".join(parts), who=who, csrf=session_csrf, base=base)


def key_form(
    branding: Branding,
    *,
    action: str,
    token: str,
    provider_name: str,
    fields: Sequence[Any],
    values: Mapping[str, str],
    error: str | None = None,
) -> web.Response:
    """The form of a ``type: api_key`` provider (no JavaScript): a secret field is a password input
    that is never filled in again; other fields keep what was entered."""
    e = html.escape
    parts = [f"<p>Enter your {e(provider_name)} credentials. They are stored encrypted and used only by"
             " the tools you run; they are never shown again.</p>"]  # fmt: skip
    if error:
        parts.append(f"<p class=error role=alert>{e(error)}</p>")
    parts.append(f'<form class=key method=post action="{e(action, quote=True)}" autocomplete=off>')
    parts.append(f'<input type=hidden name=csrf_token value="{e(token, quote=True)}">')
    for f in fields:
        name = e(f.name, quote=True)
        kind = "password" if f.secret else "text"
        value = "" if f.secret else e(values.get(f.name, ""), quote=True)
        parts.append(
            f'<label for="f-{name}">{e(f.label or f.name)}</label>'
            f'<input class=field id="f-{name}" name="{name}" type={kind} value="{value}" required'
            f" autocomplete={'new-password' if f.secret else 'off'} spellcheck=false>"
        )
    parts.append("<button type=submit class=primary>Connect</button></form>")
    status = 400 if error else 200
    return page(branding, f"Connect {provider_name}", "".join(parts), status=status)
