"""Browser endpoints: ``/v1/oauth/start/{flow_id}`` and the provider's redirect back (no API key)."""

from __future__ import annotations

from aiohttp import web

from engine.api.pages import PageKind, render_page
from engine.flows.results import CallbackResult
from engine.wiring.services import FLOWS
from engine.wiring.settings import SETTINGS

routes = web.RouteTableDef()

_KINDS: dict[str, PageKind] = {
    "completed": "success",
    "verifying": "verifying",
    "expired": "expired",
    "invalid": "not_found",
}


async def _answer(request: web.Request, result: CallbackResult) -> web.StreamResponse:
    branding = request.app[SETTINGS].current.config.api.branding
    if result.redirect is not None:
        status = 303 if result.outcome in ("verifying", "completed") else 302
        response = web.Response(
            status=status,
            headers={
                "Location": result.redirect,
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )
        verifier = request.app[SETTINGS].current.config.security.user_verifier
        if result.outcome == "verifying" and verifier.mode == "login" and result.flow_id:
            from engine.api.login_routes import bind_browser

            await bind_browser(request, response, result.flow_id)  # /login/verify wants this browser
        return response
    kind: PageKind = _KINDS.get(result.outcome, "failure")
    return render_page(
        kind,
        branding,
        message=result.message,
        detail=result.detail,
        next_uri=result.next_uri,
    )


@routes.get("/v1/oauth/start/{flow_id}")
async def start(request: web.Request) -> web.StreamResponse:
    return await _answer(request, await request.app[FLOWS].start(request.match_info["flow_id"]))


async def callback(request: web.Request) -> web.StreamResponse:
    return await _answer(request, await request.app[FLOWS].callback(dict(request.query)))


routes.get("/v1/oauth/callback")(callback)
routes.get("/api/oauth/callback")(callback)  # seed 003's redirect URL (security.oauth.redirect_urls)


@routes.get("/v1/oauth/{provider}/callback")
async def provider_callback(request: web.Request) -> web.StreamResponse:
    result = await request.app[FLOWS].callback(
        dict(request.query), provider_hint=request.match_info["provider"]
    )
    return await _answer(request, result)
