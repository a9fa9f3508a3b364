"""Connect links (DESIGN.md "Connections"): a page where one user connects the services an app asks for.

``POST /v1/connect/sessions {user_id, providers?, next_uri?, ttl?}`` (API key) answers ``{id, url,
expires_at}``; the url's random token is stored only hashed (:mod:`engine.store.connect`). ``GET
/connect/{token}`` lists the providers with each one's state and a Connect button; ``POST
/connect/{token}/{provider}`` starts that user's flow and sends the browser to its link. The flow is
verified as ``security.user_verifier`` says; with ``mode: login`` the page itself is only for a browser
signed in as the link's user (anyone else gets a refusal, and nothing starts). Forms carry a CSRF
token: the session's with ``login``, else one bound to the link. Pages are those of ``/connections``
(same headers, ``form-action 'self'``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from engine.api import connections_page as pages
from engine.api.jsonio import json_response
from engine.api.login_routes import LOGIN_SERVICE, visitor
from engine.api.schemas import SCHEMAS
from engine.api.spec import Answer, Input, Routes
from engine.config.convert import Duration
from engine.errors import BadRequest, KeyturnError, NotFound
from engine.flows.nexturi import check_next_uri
from engine.login.service import normalise
from engine.login.web import CookiePolicy, csrf_ok, csrf_token
from engine.store.connect import ConnectSession
from engine.wiring.services import FLOWS, STORE
from engine.wiring.settings import SETTINGS

api_routes = Routes(SCHEMAS)  # declared (engine.api.spec): checked inputs, in /v1/openapi.json
routes = web.RouteTableDef()  # the browser's pages

DEFAULT_TTL = 900.0  # seconds a link works when the caller does not say
MIN_TTL, MAX_TTL = 60.0, 86400.0
RESUME = "keyturn_connect"  # with login: the link's token, held by the browser while it signs in


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ttl(data: dict[str, Any]) -> float:
    raw = data.get("ttl")
    if raw is None:
        return DEFAULT_TTL
    try:
        ttl = float(Duration.parse(raw))
    except ValueError:
        raise BadRequest("body.ttl must be seconds or a duration like 15m", error="invalid_input") from None
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise BadRequest("body.ttl must be between 60 seconds and 24 hours", error="invalid_input")
    return ttl


def _providers(request: web.Request, data: dict[str, Any]) -> list[str] | None:
    raw = data.get("providers")
    if raw is None:
        return None
    configured = request.app[SETTINGS].current.providers
    out: list[str] = []
    for i, pid in enumerate(raw):  # a list of 1 to 50 ids (checked by the declared schema)
        if pid not in configured:
            raise NotFound(
                f"body.providers[{i}]: {pid[:64]!r} is not a configured provider", error="unknown_provider"
            )
        if pid not in out:
            out.append(pid)
    return out


@api_routes.route(
    "POST",
    "/v1/connect/sessions",
    summary="A connect link: a page where one user connects the providers named",
    body="ConnectSessionRequest",
    answers={201: Answer("The link and when it expires", "ConnectSession")},
    tag="connect",
)
async def create_session(request: web.Request, inp: Input) -> web.Response:
    data = inp.body
    settings = request.app[SETTINGS].current
    providers = _providers(request, data)
    next_uri = check_next_uri(data.get("next_uri"), settings.config.security.next_uri_allowlist)
    token, record = await request.app[STORE].connect.create(
        data["user_id"], providers=providers, next_uri=next_uri, ttl=_ttl(data)
    )
    return json_response(
        {
            "id": record.id,
            "url": f"{settings.public_url}/connect/{token}",
            "expires_at": _iso(record.expires_at),
        },
        status=201,
    )


def _branding(request: web.Request) -> Any:
    return request.app[SETTINGS].current.config.api.branding


def _redirect(location: str) -> web.Response:
    return web.Response(
        status=303,
        headers={"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def _link(request: web.Request) -> tuple[str, ConnectSession | None, web.StreamResponse | None]:
    """The link of the URL's token, or the page that says it is unknown or expired."""
    token = request.match_info["token"]
    link = await request.app[STORE].connect.lookup(token)
    branding = _branding(request)
    if link is None:
        page = pages.message(branding, "Unknown link", "This connect link is not valid.", status=404)
        return token, None, page
    if link.expired():
        page = pages.message(
            branding,
            "This link has expired",
            "Ask the app for a new link to connect your accounts.",
            status=410,
        )
        return token, None, page
    return token, link, None


async def _login_check(
    request: web.Request, token: str, link: ConnectSession
) -> tuple[Any, web.StreamResponse | None]:
    """With ``user_verifier: login``: the signed-in visitor when they are the link's user, else a page."""
    service = request.app[LOGIN_SERVICE]
    who = await visitor(request)
    public_url = request.app[SETTINGS].current.public_url
    if who is None:  # sign in first; the token waits in this browser, not in the sign-in's stored path
        response = _redirect(f"{public_url}/login?next=/connect/resume")
        CookiePolicy.for_url(public_url).set(response, RESUME, token, max_age=600)
        return None, response
    claim = service.settings.user_claim if service.settings is not None else "email"
    if normalise(claim, link.user_id) != who.session.user_id:
        page = pages.message(
            _branding(request),
            "This link is for another account",
            f"You are signed in as {who.session.user_id}, but this link was made for someone else. "
            "Nothing was connected.",
            status=403,
        )
        return who, page
    return who, None


def _login_mode(request: web.Request) -> bool:
    return request.app[SETTINGS].current.config.security.user_verifier.mode == "login"


@routes.get("/connect/resume")
async def resume(request: web.Request) -> web.StreamResponse:
    """After signing in: back to the link whose token this browser holds."""
    public_url = request.app[SETTINGS].current.public_url
    cookies = CookiePolicy.for_url(public_url)
    token = cookies.get(request, RESUME)
    if not token:
        return pages.message(_branding(request), "Unknown link", "Open the connect link again.", status=404)
    response = _redirect(f"{public_url}/connect/{token}")
    cookies.clear(response, RESUME)
    return response


@routes.get("/connect/{token}")
async def connect_page(request: web.Request) -> web.StreamResponse:
    token, link, refused = await _link(request)
    if refused is not None:
        return refused
    assert link is not None
    who = None
    if _login_mode(request):
        who, refused = await _login_check(request, token, link)
        if refused is not None:
            return refused
    settings = request.app[SETTINGS].current
    configured = settings.providers
    offered = [p for p in (link.providers or sorted(configured)) if p in configured]
    login = request.app[LOGIN_SERVICE].settings
    casefold = _login_mode(request) and login is not None and login.user_claim == "email"
    grants = {
        g.provider_id: g
        for g in await request.app[STORE].grants.list(user_id=link.user_id, casefold=casefold)
    }
    items = []
    for pid in offered:
        grant = grants.get(pid)
        state = grant.status if grant is not None and grant.status in ("active", "needs_reauth") else "none"
        items.append((pid, configured[pid].description or pid, state))
    return pages.connect(
        _branding(request),
        user=link.user_id,
        action=f"{settings.base_path}/connect/{token}",
        csrf=who.csrf if who is not None else csrf_token(token),
        providers=items,
        next_uri=link.next_uri,
        expires=link.expires_at,
        who=who.session.user_id if who is not None else None,
        session_csrf=who.csrf if who is not None else None,
        base=settings.base_path,
    )


@routes.post("/connect/{token}/{provider}")
async def connect_provider(request: web.Request) -> web.StreamResponse:
    token, link, refused = await _link(request)
    if refused is not None:
        return refused
    assert link is not None
    form = await request.post()
    branding = _branding(request)
    if _login_mode(request):
        who, refused = await _login_check(request, token, link)
        if refused is not None:
            return refused
        valid = csrf_ok(who.token, form.get("csrf_token"))
    else:
        valid = csrf_ok(token, form.get("csrf_token"))
    if not valid:
        return pages.message(
            branding,
            "Request refused",
            "This form has expired or did not come from this site. Reload the page and try again.",
            status=403,
        )
    settings = request.app[SETTINGS].current
    pid = request.match_info["provider"]
    if pid not in settings.providers or (link.providers is not None and pid not in link.providers):
        return pages.message(
            branding, "Unknown service", "This link does not offer that service.", status=404
        )
    try:
        answer = await request.app[FLOWS].authorize(
            user_id=link.user_id,
            requirement={"id": pid},
            scopes=(),
            next_uri=link.next_uri,
            client_ip=settings.client_address.of(request),
        )
    except KeyturnError as exc:
        return pages.message(branding, "Cannot connect", exc.msg, status=exc.status)
    if answer.status == "completed" or not answer.url:
        return _redirect(f"{settings.public_url}/connect/{token}")
    return _redirect(answer.url)
