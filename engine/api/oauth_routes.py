"""Browser endpoints: ``/v1/oauth/start/{flow_id}`` and the provider's redirect back (no API key)."""

from __future__ import annotations

import contextlib

from aiohttp import web

from engine.api.connections_page import key_form
from engine.api.pages import PageKind, render_page
from engine.api.schemas import SCHEMAS, ident
from engine.api.spec import Answer, Input, Param, Routes
from engine.errors import BadRequest
from engine.flows.apikey import KeyForm
from engine.flows.results import CallbackResult
from engine.wiring.services import FLOWS
from engine.wiring.settings import SETTINGS

routes = Routes(SCHEMAS)
PAGE = Answer("A page for the user", media_type="text/html")
REDIRECT = Answer("To the provider, the verifier or next_uri", media_type="", headers=("Location",))
CALLBACK_QUERY = tuple(
    Param(name, {"type": "string"}, description=description)
    for name, description in (
        ("state", "The state the flow was started with."),
        ("code", "The authorization code."),
        ("iss", "The issuer (RFC 9207)."),
        ("error", "The provider's error word."),
        ("error_description", "The provider's error text."),
    )
)

_KINDS: dict[str, PageKind] = {
    "completed": "success",
    "verifying": "verifying",
    "expired": "expired",
    "invalid": "not_found",
}


async def _answer(request: web.Request, result: CallbackResult | KeyForm) -> web.StreamResponse:
    settings = request.app[SETTINGS].current
    branding = settings.config.api.branding
    if isinstance(result, KeyForm):
        return key_form(
            branding,
            action=f"{settings.base_path}/v1/oauth/start/{result.flow_id}",
            token=result.token,
            provider_name=result.provider_name,
            fields=result.fields,
            values=result.values,
            error=result.error,
        )
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


@routes.route(
    "GET",
    "/v1/oauth/start/{flow_id}",
    summary="The link handed out: redirects the browser to the provider",
    path_params=(Param("flow_id", {"type": "string"}),),
    answers={200: PAGE, 302: REDIRECT},
    public=True,
    tag="browser",
    scoped=False,
)
async def start(request: web.Request, inp: Input) -> web.StreamResponse:
    return await _answer(request, await request.app[FLOWS].start(inp.path["flow_id"]))


@routes.route(
    "POST",
    "/v1/oauth/start/{flow_id}",
    summary="The key form of a type: api_key provider, posted back (form-encoded, with its csrf_token)",
    path_params=(Param("flow_id", {"type": "string"}),),
    answers={200: PAGE, 302: REDIRECT, 303: REDIRECT},
    public=True,
    tag="browser",
    scoped=False,
)
async def submit_key(request: web.Request, inp: Input) -> web.StreamResponse:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest("request body must be a form (application/x-www-form-urlencoded)")
    form: dict[str, str] = {}
    with contextlib.suppress(ValueError):  # a body that is not a form is a form with nothing in it
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    return await _answer(request, await request.app[FLOWS].submit_key(inp.path["flow_id"], form))


async def callback(request: web.Request, inp: Input) -> web.StreamResponse:
    return await _answer(request, await request.app[FLOWS].callback(dict(request.query)))


for _path in ("/v1/oauth/callback", "/api/oauth/callback"):  # the second: seed 003's redirect URL
    routes.route(
        "GET",
        _path,
        summary="The provider's redirect back",
        query=CALLBACK_QUERY,
        answers={200: PAGE, 302: REDIRECT, 303: REDIRECT},
        public=True,
        tag="browser",
        scoped=False,
    )(callback)


@routes.route(
    "GET",
    "/v1/oauth/{provider}/callback",
    summary="The provider's redirect back, on a path of its own",
    path_params=(Param("provider", ident("The provider entry's id.")),),
    query=CALLBACK_QUERY,
    answers={200: PAGE, 302: REDIRECT, 303: REDIRECT},
    public=True,
    tag="browser",
    scoped=False,
)
async def provider_callback(request: web.Request, inp: Input) -> web.StreamResponse:
    result = await request.app[FLOWS].callback(dict(request.query), provider_hint=inp.path["provider"])
    return await _answer(request, result)
