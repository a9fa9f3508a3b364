"""Browser routes of sign-in (DESIGN.md "Sign-in, verification, the person's own pages").

``GET /login?next=`` signs a person in at ``login.provider``; ``GET /login/callback`` makes a new
session (a session cookie present before is never kept: SECURITY.md 31); ``POST /logout`` ends it.
``GET /login/verify?flow_id=`` is the ``security.user_verifier: {mode: login}`` step the callback sends
the browser to: signed in as the flow's user, the grant completes; as anyone else the flow fails
(``user_mismatch``) and nothing is stored. ``/connections`` lists the person's grants with Disconnect
and Reconnect. Every POST carries the session's CSRF token (SECURITY.md 32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import web

from engine.api import connections_page as pages
from engine.errors import KeyturnError, ProviderError, UserMismatch
from engine.events import LoginEvent, LoginName, Outcome
from engine.flows.service import FlowService
from engine.login.metrics import LoginMetrics
from engine.login.service import LoginService, normalise
from engine.login.starts import StartLimit
from engine.login.web import LOGIN, SESSION, VERIFY, CookiePolicy, binding, csrf_ok, csrf_token, safe_next
from engine.metrics.registry import METRICS
from engine.store.sessions import SessionRecord
from engine.wiring.services import FLOWS, OAUTH, REVOKER, STORE
from engine.wiring.settings import EVENTS, SETTINGS, ReloadReport, Settings

routes = web.RouteTableDef()

LOGIN_SERVICE = web.AppKey("keyturn_login", LoginService)
LOGIN_METRICS = web.AppKey("keyturn_login_metrics", LoginMetrics)
LOGIN_STARTS = web.AppKey("keyturn_login_starts", StartLimit)  # GET /login per address


def setup(app: web.Application) -> None:
    """Add the routes, and the sign-in service once the store and the OAuth client are open."""
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_login_ctx)


async def _login_ctx(app: web.Application) -> AsyncIterator[None]:
    holder = app[SETTINGS]
    app[LOGIN_SERVICE] = LoginService(
        store=app[STORE],
        oauth=app[OAUTH],
        config=lambda: holder.current.config,
        providers=lambda: holder.current.providers,
        public_url=lambda: holder.current.public_url,
    )
    app[LOGIN_METRICS] = LoginMetrics(app.get(METRICS))
    starts = app[LOGIN_STARTS] = StartLimit(
        lambda: app[STORE].rate_hits, lambda: holder.current.config, app[EVENTS].publish
    )

    async def reconfigure(old: Settings, new: Settings, report: ReloadReport) -> None:
        if report.touched("security.rate_limiting"):
            starts.configure(new.config.security.rate_limiting)

    unsubscribe = holder.subscribe(reconfigure)
    try:
        yield
    finally:
        unsubscribe()


@dataclasses.dataclass(frozen=True)
class Visitor:
    token: str  # the cookie's secret value (never logged)
    session: SessionRecord

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def _cookies(request: web.Request) -> CookiePolicy:
    return CookiePolicy.for_url(request.app[SETTINGS].current.public_url)


def _branding(request: web.Request) -> Any:
    return request.app[SETTINGS].current.config.api.branding


def _base(request: web.Request) -> str:
    """The path of ``api.public_url``: every link and form action on these pages starts with it."""
    return request.app[SETTINGS].current.base_path


def _emit(request: web.Request, name: LoginName, *, outcome: Outcome, **fields: Any) -> None:
    source_ip = request.app[SETTINGS].current.client_address.of(request)
    request.app[EVENTS].publish(LoginEvent(name=name, outcome=outcome, source_ip=source_ip, **fields))


async def visitor(request: web.Request) -> Visitor | None:
    """The signed-in person of this request (None: no cookie, or a revoked or expired session)."""
    token = _cookies(request).get(request, SESSION)
    if not token:
        return None
    record = await request.app[STORE].sessions.lookup(token)
    return Visitor(token, record) if record is not None else None


def _redirect(location: str) -> web.Response:
    return web.Response(
        status=303,
        headers={"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _to_login(request: web.Request, next_path: str) -> web.Response:
    public_url = request.app[SETTINGS].current.public_url
    return _redirect(f"{public_url}/login?next={quote(next_path, safe='/')}")


def _not_configured(request: web.Request) -> web.Response:
    return pages.message(
        _branding(request), "Sign-in is not configured", "This engine has no login: section.", status=404
    )


# ---- sign in / out ------------------------------------------------------------------------------
@routes.get("/login")
async def login(request: web.Request) -> web.StreamResponse:
    service = request.app[LOGIN_SERVICE]
    if service.settings is None:
        return _not_configured(request)
    await request.app[LOGIN_STARTS].count(request.app[SETTINGS].current.client_address.of(request))
    next_path = safe_next(request.query.get("next"))
    try:
        url, state = await service.begin(next_path)
    except ProviderError as exc:
        request.app[LOGIN_METRICS].login("failed", exc.kind)
        _emit(request, "login.failed", outcome="error", reason=exc.kind[:64])
        return pages.message(
            _branding(request), "Sign-in failed", "The identity provider cannot be reached.", status=502
        )
    response = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    _cookies(request).set(response, LOGIN, state, max_age=600)
    return response


@routes.get("/login/callback")
async def login_callback(request: web.Request) -> web.StreamResponse:
    service = request.app[LOGIN_SERVICE]
    cookies = _cookies(request)
    result = await service.finish(dict(request.query), cookies.get(request, LOGIN))
    metrics = request.app[LOGIN_METRICS]
    branding = _branding(request)
    if result.user_id is None:
        reason = result.reason or "failed"
        metrics.login("failed", reason)
        _emit(request, "login.failed", outcome="denied" if result.status == 403 else "failure", reason=reason)
        response: web.StreamResponse = pages.message(
            branding,
            "Sign-in failed",
            result.message,
            status=result.status,
            link=("/login?next=" + quote(result.next_path, safe="/"), "Try again"),
            base=_base(request),
        )
        if reason != "state_mismatch":  # a stray answer does not end this browser's sign-in in progress
            cookies.clear(response, LOGIN)
        return response
    store = request.app[STORE]
    earlier = cookies.get(request, SESSION)
    if earlier:  # never keep a session id the browser had before signing in (fixation)
        old = await store.sessions.delete_token(earlier)
        if old is not None:
            metrics.session_revoked("replaced")
            _emit(request, "session.revoked", outcome="success", user_id=old.user_id, reason="replaced")
    ttl = float(service.settings.session_ttl) if service.settings else 3600.0
    token, session = await store.sessions.create(result.user_id, ttl)
    metrics.login("succeeded")
    _emit(request, "login.succeeded", outcome="success", user_id=session.user_id, session_id=session.id)
    response = _redirect(request.app[SETTINGS].current.public_url + result.next_path)
    cookies.clear(response, LOGIN)
    cookies.set(response, SESSION, token, max_age=ttl)
    return response


async def _form(request: web.Request) -> tuple[Visitor | None, bool]:
    """The visitor and whether the form's csrf_token is this session's."""
    who = await visitor(request)
    form = await request.post()
    return who, who is not None and csrf_ok(who.token, form.get("csrf_token"))


def _csrf_refused(request: web.Request) -> web.Response:
    return pages.message(
        _branding(request),
        "Request refused",
        "This form has expired or did not come from this site. Reload the page and try again.",
        status=403,
        link=("/connections", "Your connections"),
        base=_base(request),
    )


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    who, ok = await _form(request)
    if who is None:
        return _to_login(request, "/connections")
    if not ok:
        return _csrf_refused(request)
    await request.app[STORE].sessions.delete_token(who.token)
    request.app[LOGIN_METRICS].session_revoked("logout")
    _emit(request, "session.revoked", outcome="success", user_id=who.session.user_id, reason="logout")
    response = pages.message(
        _branding(request),
        "Signed out",
        "You are signed out.",
        link=("/login", "Sign in again"),
        base=_base(request),
    )
    _cookies(request).clear(response, SESSION)
    return response


# ---- security.user_verifier: {mode: login} ----------------------------------------------------------
async def bind_browser(request: web.Request, response: web.StreamResponse, flow_id: str) -> None:
    """On the callback's way to /login/verify: remember in this browser that it came back with the flow."""
    config = request.app[SETTINGS].current.config
    key = await request.app[LOGIN_SERVICE].binding_key()
    _cookies(request).set(
        response, f"{VERIFY}_{flow_id}", binding(key, flow_id), max_age=float(config.security.flow_ttl)
    )


@routes.get("/login/verify")
async def verify(request: web.Request) -> web.StreamResponse:
    service = request.app[LOGIN_SERVICE]
    config = request.app[SETTINGS].current.config
    branding = _branding(request)
    if service.settings is None or config.security.user_verifier.mode != "login":
        return _not_configured(request)
    flow_id = request.query.get("flow_id", "")
    if not flow_id or len(flow_id) > 40 or not flow_id.replace("_", "").replace("-", "").isalnum():
        return pages.message(branding, "Unknown authorization link", "This link is not valid.", status=404)
    cookies = _cookies(request)
    bound = cookies.get(request, f"{VERIFY}_{flow_id}")
    key = await service.binding_key()
    if bound is None or bound != binding(key, flow_id):
        return pages.message(
            branding,
            "Finish in the same browser",
            "Open the authorization link again in the browser where you want to finish it.",
            status=403,
        )
    who = await visitor(request)
    if who is None:
        return _to_login(request, f"/login/verify?flow_id={flow_id}")
    flow = await request.app[STORE].flows.get(flow_id)
    if flow is None or flow.status != "verifying":
        return pages.message(
            branding,
            "This link has expired",
            "This authorization has expired or was already finished.",
            status=410,
        )
    claim = service.settings.user_claim
    flows: FlowService = request.app[FLOWS]
    matches = normalise(claim, flow.user_id) == who.session.user_id
    try:
        confirmed = await flows.confirm_user(flow_id, flow.user_id if matches else who.session.user_id)
    except UserMismatch:
        response: web.StreamResponse = pages.message(
            branding,
            "This authorization is for another account",
            f"You are signed in as {who.session.user_id}, but this link was made for someone else. "
            "Nothing was connected. Ask for a new link while signed in as yourself.",
            status=403,
        )
        cookies.clear(response, f"{VERIFY}_{flow_id}")
        return response
    except KeyturnError as exc:
        return pages.message(branding, "Authorization failed", exc.msg, status=exc.status)
    next_uri = confirmed.next_uri
    public_url = request.app[SETTINGS].current.public_url
    response = _redirect(next_uri or f"{public_url}/connections?notice=connected")
    cookies.clear(response, f"{VERIFY}_{flow_id}")
    return response


# ---- /connections -----------------------------------------------------------------------------------
@routes.get("/connections")
async def connections(request: web.Request) -> web.StreamResponse:
    if request.app[LOGIN_SERVICE].settings is None:
        return _not_configured(request)
    who = await visitor(request)
    if who is None:
        return _to_login(request, "/connections")
    claim = request.app[LOGIN_SERVICE].settings.user_claim  # type: ignore[union-attr]
    mine = await request.app[STORE].grants.list(user_id=who.session.user_id, casefold=claim == "email")
    providers = request.app[SETTINGS].current.providers
    names = {pid: p.description or pid for pid, p in providers.items()}
    notice = request.query.get("notice")
    return pages.connections(
        _branding(request),
        who=who.session.user_id,
        csrf=who.csrf,
        grants=mine,
        names=names,
        notice=notice,
        base=_base(request),
    )


async def _own_grant(request: web.Request) -> tuple[Visitor | None, Any, web.StreamResponse | None]:
    """The visitor and the grant of the URL when the form is valid and the grant is theirs."""
    if request.app[LOGIN_SERVICE].settings is None:
        return None, None, _not_configured(request)
    who, ok = await _form(request)
    if who is None:
        return None, None, _to_login(request, "/connections")
    if not ok:
        return who, None, _csrf_refused(request)
    grant = await request.app[STORE].grants.get(request.match_info["grant_id"][:40])
    claim = request.app[LOGIN_SERVICE].settings.user_claim  # type: ignore[union-attr]
    if grant is None or normalise(claim, grant.user_id) != who.session.user_id:
        page = pages.message(
            _branding(request), "Unknown connection", "You have no such connection.", status=404,
            link=("/connections", "Your connections"),
            base=_base(request),
        )  # fmt: skip
        return who, None, page
    return who, grant, None


@routes.post("/connections/{grant_id}/disconnect")
async def disconnect(request: web.Request) -> web.StreamResponse:
    who, grant, refused = await _own_grant(request)
    if refused is not None:
        return refused
    assert who is not None
    result = await request.app[REVOKER].revoke(grant.id)
    request.app[LOGIN_METRICS].connection_disconnected(grant.provider_id)
    _emit(
        request,
        "connection.disconnected",
        outcome="success",
        user_id=grant.user_id,
        provider=grant.provider_id,
        result=result.outcome if result is not None else "gone",
    )
    notice = "disconnect_pending" if result is not None and not result.deleted else "disconnected"
    return _redirect(f"{request.app[SETTINGS].current.public_url}/connections?notice={notice}")


@routes.post("/connections/{grant_id}/default")
async def make_default(request: web.Request) -> web.StreamResponse:
    """The account calls use when they name none (of this grant's user and provider)."""
    _, grant, refused = await _own_grant(request)
    if refused is not None:
        return refused
    await request.app[STORE].grants.set_default(grant.id)
    return _redirect(f"{request.app[SETTINGS].current.public_url}/connections?notice=default")


@routes.post("/connections/{grant_id}/reconnect")
async def reconnect(request: web.Request) -> web.StreamResponse:
    _, grant, refused = await _own_grant(request)
    if refused is not None:
        return refused
    providers = request.app[SETTINGS].current.providers
    provider = providers.get(grant.provider_id)
    branding = _branding(request)
    if provider is None:
        return pages.message(
            branding, "Cannot reconnect", "This provider is no longer configured.", status=409
        )
    flows: FlowService = request.app[FLOWS]
    try:
        answer = await flows.authorize(
            user_id=grant.user_id,
            requirement={"id": grant.provider_id},
            scopes=tuple(grant.scopes),
            next_uri=None,
            client_ip=request.app[SETTINGS].current.client_address.of(request),
            account=grant.account,
        )
    except KeyturnError as exc:
        return pages.message(branding, "Cannot reconnect", exc.msg, status=exc.status)
    if answer.status == "completed" or not answer.url:
        return _redirect(f"{request.app[SETTINGS].current.public_url}/connections?notice=connected")
    return pages.continue_to(branding, answer.url, provider.description or provider.id)
