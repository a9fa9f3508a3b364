"""``/approvals/{id}``: a held tool call as its user sees it, with Approve and Deny (no JavaScript).

The page shows the app (the API key's name), the tool and its inputs, every one escaped; the forms
carry the session's CSRF token (SECURITY.md 32). Headers and CSP are the connections pages'.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from engine.api.connections_page import page
from engine.config.model import Branding

STATE_TEXT = {
    "pending": "Waiting for your decision",
    "approved": "Approved: the app may run this call once",
    "used": "Approved and run",
    "denied": "Denied",
    "expired": "Expired: the app must ask again",
}


def approval(
    branding: Branding, record: Any, *, who: str, csrf: str, notice: str | None = None, base: str = ""
) -> web.Response:
    """The page of ``record``; ``base`` is the path of ``api.public_url`` (``Settings.base_path``)."""
    e = html.escape
    state = record.state
    inputs = json.dumps(record.inputs, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    parts = []
    if notice:
        parts.append(f"<p class=notice>{e(notice)}</p>")
    parts.append(
        f"<p><b>{e(record.caller)}</b> wants to run <b>{e(record.tool_name)}</b> as you.</p>"
        f"<div class=meta>Status: <span id=state>{e(STATE_TEXT.get(state, state))}</span></div>"
        f"<div class=meta>Asked {record.created_at:%Y-%m-%d %H:%M} UTC; "
        f"expires {record.expires_at:%Y-%m-%d %H:%M} UTC</div>"
        f"<h2>Inputs</h2><pre id=inputs>{e(inputs)}</pre>"
    )
    if record.reason:
        parts.append(f"<div class=meta>Reason: {e(record.reason)}</div>")
    if state == "pending" and record.approver == "user":
        token = e(csrf, quote=True)
        action = e(f"{base}/approvals/{record.id}", quote=True)
        parts.append(
            f'<form method=post action="{action}" id=approve>'
            f'<input type=hidden name=csrf_token value="{token}">'
            "<input type=hidden name=decision value=approve>"
            "<button type=submit class=primary>Approve</button></form>"
            f'<form method=post action="{action}" id=deny>'
            f'<input type=hidden name=csrf_token value="{token}">'
            "<input type=hidden name=decision value=deny>"
            "<p><label>Reason (optional, shown to the app) "
            "<input name=reason maxlength=500 size=30></label></p>"
            "<button type=submit>Deny</button></form>"
        )
    elif state == "pending":
        parts.append("<p>The app decides on this call; there is nothing to do here.</p>")
    return page(branding, "Approve a tool call", "".join(parts), who=who, csrf=csrf, base=base)
