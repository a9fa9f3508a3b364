"""Deciding held tool calls (``tools.approval``): the user's page and the app's API (SECURITY.md 40).

- ``GET /approvals/{id}``: for the signed-in person (``login:``) whose call it is; anyone else (signed in
  as another account) gets the same 404 as for an unknown id, so nothing about the call shows.
- ``POST /approvals/{id}`` (form: ``csrf_token``, ``decision`` approve|deny, ``reason``): decides a call
  whose rule says ``approver: user``.
- ``GET /v1/approvals?user_id=&status=``: the calling app's approvals (its API key's calls only);
  ``POST /v1/approvals/{id}`` ``{decision: approve|deny, reason?}``: decides one whose rule says
  ``approver: app``.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from engine.api import approvals_page, connections_page
from engine.api.jsonio import json_response
from engine.api.login_routes import LOGIN_SERVICE, visitor
from engine.api.schemas import SCHEMAS, ident
from engine.api.spec import Answer, Input, Param, Routes
from engine.errors import BadRequest, KeyturnError, NotFound
from engine.identity import IDENTITY
from engine.login.service import normalise
from engine.login.web import csrf_ok
from engine.tools.approvals import Approvals, caller_name
from engine.wiring.services import TOOLS
from engine.wiring.settings import SETTINGS

routes = Routes(SCHEMAS)  # /v1/approvals*
pages = web.RouteTableDef()  # /approvals/{id}

STATUSES = ("pending", "approved", "denied", "used", "expired")
DECISIONS = ("approve", "deny")


def _approvals(request: web.Request) -> Approvals:
    approvals = request.app[TOOLS].approvals
    assert approvals is not None  # always built by engine.wiring.services.tools_ctx
    return approvals


def _decision(value: object, where: str) -> Literal["approve", "deny"]:
    if value == "approve":
        return "approve"
    if value == "deny":
        return "deny"
    raise BadRequest(f"{where}.decision must be one of approve, deny")


# ---- the app's API ---------------------------------------------------------------------------------
ID = (Param("approval_id", ident("The approval id (ap_...).", max_length=40)),)


@routes.route(
    "GET",
    "/v1/approvals",
    summary="The calling app's held tool calls (tools.approval), newest first",
    query=(
        Param("user_id", ident("Only this user's.")),
        Param("status", {"type": "string", "enum": list(STATUSES)}, description="Only those in this state."),
    ),
    answers={200: Answer("The approvals", "ApprovalList")},
    tag="approvals",
)
async def list_approvals(request: web.Request, inp: Input) -> web.Response:
    approvals = _approvals(request)
    records = await approvals.store.approvals.list(
        caller=caller_name(request.get(IDENTITY)),
        user_id=inp.query.get("user_id"),
        status=inp.query.get("status"),
    )
    items = [approvals.item(r) for r in records]
    return json_response({"items": items, "total_count": len(items)})


@routes.route(
    "POST",
    "/v1/approvals/{approval_id}",
    summary="Approve or deny a held call whose rule says approver: app",
    path_params=ID,
    body="ApprovalDecision",
    answers={200: Answer("The decided approval", "Approval")},
    tag="approvals",
)
async def decide_approval(request: web.Request, inp: Input) -> web.Response:
    approvals = _approvals(request)
    record = await approvals.store.approvals.get(inp.path["approval_id"])
    if record is None or record.caller != caller_name(request.get(IDENTITY)):  # another app's: unknown
        raise NotFound("no such approval", error="not_found")
    decision = _decision(inp.body["decision"], "body")
    decided = await approvals.decide(record.id, decision, by="app", reason=inp.body.get("reason"))
    return json_response(approvals.item(decided))


# ---- the user's page -------------------------------------------------------------------------------
def _branding(request: web.Request) -> Any:
    return request.app[SETTINGS].current.config.api.branding


def _unknown(request: web.Request, who: str) -> web.Response:
    return connections_page.message(
        _branding(request),
        "Unknown approval",
        f"You (signed in as {who}) have no such approval. It may be for another account.",
        status=404,
    )


async def _own(request: web.Request) -> tuple[Any, Any, web.StreamResponse | None]:
    """(visitor, approval, None) when the signed-in person's own approval; else the page to answer."""
    service = request.app[LOGIN_SERVICE]
    approval_id = request.match_info["approval_id"][:40]
    if service.settings is None:
        page = connections_page.message(
            _branding(request), "Sign-in is not configured", "This engine has no login.", status=404
        )
        return None, None, page
    who = await visitor(request)
    if who is None:
        public_url = request.app[SETTINGS].current.public_url
        location = f"{public_url}/login?next=/approvals/{approval_id}"
        return (
            None,
            None,
            web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"}),
        )
    record = await _approvals(request).store.approvals.get(approval_id)
    if record is None or normalise(service.settings.user_claim, record.user_id) != who.session.user_id:
        return who, None, _unknown(request, who.session.user_id)
    return who, record, None


@pages.get("/approvals/{approval_id}")
async def approval_page(request: web.Request) -> web.StreamResponse:
    who, record, answer = await _own(request)
    if answer is not None:
        return answer
    notice = {"approved": "You approved this call.", "denied": "You denied this call."}.get(
        request.query.get("notice", "")
    )
    return approvals_page.approval(
        _branding(request),
        record,
        who=who.session.user_id,
        csrf=who.csrf,
        notice=notice,
        base=request.app[SETTINGS].current.base_path,
    )


@pages.post("/approvals/{approval_id}")
async def decide_on_page(request: web.Request) -> web.StreamResponse:
    who, record, answer = await _own(request)
    if answer is not None:
        return answer
    form = await request.post()
    if not csrf_ok(who.token, form.get("csrf_token")):
        return connections_page.message(
            _branding(request),
            "Request refused",
            "This form has expired or did not come from this site. Reload the page and try again.",
            status=403,
        )
    try:
        decision = _decision(form.get("decision"), "form")
        reason = form.get("reason")
        decided = await _approvals(request).decide(
            record.id, decision, by="user", reason=reason if isinstance(reason, str) else None
        )
    except KeyturnError as exc:
        return connections_page.message(_branding(request), "Cannot decide", exc.msg, status=exc.status)
    public_url = request.app[SETTINGS].current.public_url
    location = f"{public_url}/approvals/{decided.id}?notice={decided.status}"
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
