"""The MCP authorization server's HTTP side: metadata, ``/oauth2/*`` and the consent page.

- ``GET /.well-known/oauth-authorization-server`` (RFC 8414; also ``/.well-known/openid-configuration``)
  while some MCP endpoint uses ``oauth``; ``GET /.well-known/oauth-protected-resource/mcp[/{slug}]``
  (RFC 9728) for ``oauth`` and ``jwt``. Under a path-prefixed ``api.public_url`` both are also served
  with that path inserted after ``/.well-known/...`` (RFC 8414 3.1, RFC 9728 3.1).
- ``GET /oauth2/authorize``: the request is checked (client, redirect URI, PKCE S256, resource)
  before anything else; an unsigned-in person goes through ``/login`` and comes back; a client the
  person already allowed (remembered consent) gets its code at once; otherwise a consent page names
  the client, where it will send the person, and what it asks for. ``POST /oauth2/authorize`` is
  that page's answer (CSRF token of the session, SECURITY.md 32). Every answer carries ``iss``.
- ``POST /oauth2/token``, ``POST /oauth2/register`` (``mcp.oauth.registration: open``),
  ``POST /oauth2/revoke``.

The metadata documents and the token, registration and revocation endpoints answer any origin
(``Access-Control-Allow-Origin: *``, no cookies involved) and their CORS preflight (``OPTIONS``), so
an MCP client running in a browser can use them.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from engine.api import connections_page as pages
from engine.events import McpAuthEvent
from engine.mcp.authmodels import SCOPE, Incoming, Outgoing
from engine.mcp.authserver import McpAuthServer
from engine.mcp.cimd import ClientMetadataFetcher
from engine.mcp.resource import endpoint_mode, protected_resource_metadata
from engine.wiring.services import STORE
from engine.wiring.settings import EVENTS, SETTINGS

MCP_AUTH = web.AppKey("keyturn_mcp_auth", McpAuthServer)
FORM_ONLY = frozenset({"csrf_token", "decision", "remember"})
SCOPE_TEXT = {SCOPE: "Use the tools of this server as you (Keyturn runs them with your connected accounts)"}

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_ctx)


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    holder = app[SETTINGS]
    fetcher = ClientMetadataFetcher(
        lambda: holder.current.config.mcp.oauth.client_metadata,
        development=lambda: holder.current.config.api.development,
        base_dir=holder.current.base_dir,
    )
    app[MCP_AUTH] = McpAuthServer(
        store=lambda: app[STORE].mcp_oauth,
        config=lambda: holder.current.config,
        public_url=lambda: holder.current.public_url,
        fetcher=fetcher,
        publish=app[EVENTS].publish,
    )
    yield
    await fetcher.close()


def _uses_oauth(request: web.Request) -> bool:
    config = request.app[SETTINGS].current.config
    return config.mcp.enabled and (
        config.mcp.auth == "oauth" or any(g.auth == "oauth" for g in config.mcp.gateways)
    )


def _not_found() -> web.Response:
    body = {
        "code": 404,
        "error": "not_found",
        "msg": "the MCP authorization server is not enabled (mcp.auth)",
    }
    return web.json_response(body, status=404)


CORS_HEADERS = "Authorization, Content-Type, MCP-Protocol-Version"


def _preflight(methods: str, serving: Callable[[web.Request], bool]) -> Handler:
    """A CORS preflight answer (204) for a route that serves ``methods``, 404 while it is off."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if not serving(request):
            return _not_found()
        headers = {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": f"{methods}, OPTIONS",
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Max-Age": "86400",
            "Cache-Control": "no-store",
        }
        return web.Response(status=204, headers=headers)

    return answer


PR_WELL_KNOWN = "/.well-known/oauth-protected-resource"
AS_WELL_KNOWN = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


def _pr_path(request: web.Request) -> str | None:
    """The MCP endpoint (``/mcp``, ``/mcp/{slug}``) whose metadata is asked for, or None.

    Both forms are served: ``/.well-known/oauth-protected-resource/mcp`` (what ``WWW-Authenticate``
    names, ``{public_url}/.well-known/...``, reached through a proxy that strips the path of
    ``api.public_url``) and RFC 9728's path insertion ``/.well-known/oauth-protected-resource{path}/mcp``
    (a proxy that passes the root ``/.well-known/`` on unchanged)."""
    settings = request.app[SETTINGS].current
    path = request.path[len(PR_WELL_KNOWN) :]
    base = settings.base_path
    if base and path.startswith(base + "/mcp"):
        path = path[len(base) :]
    mode = endpoint_mode(settings.config, path)
    return path if mode in ("oauth", "jwt") else None


def _serves_pr_metadata(request: web.Request) -> bool:
    return _pr_path(request) is not None


def _serves_as_metadata(request: web.Request) -> bool:
    """RFC 8414 metadata at ``/.well-known/oauth-authorization-server`` (also with the path of
    ``api.public_url`` inserted, RFC 8414 section 3.1) and at the OpenID Connect spelling MCP clients
    try too, ``/.well-known/openid-configuration`` (the one that reaches the engine through a proxy
    that strips the path: ``{issuer}/.well-known/openid-configuration``)."""
    if not _uses_oauth(request):
        return False
    base = request.app[SETTINGS].current.base_path
    return any(request.path in (prefix, prefix + base) for prefix in AS_WELL_KNOWN)


def _registration_open(request: web.Request) -> bool:
    return _uses_oauth(request) and request.app[SETTINGS].current.config.mcp.oauth.registration == "open"


def _cors(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _incoming(request: web.Request, *, json_body: bool = False) -> Incoming:
    public = request.app[SETTINGS].current.public_url
    uri = public + request.path_qs
    if uri.startswith("http://"):  # authlib's transport check: TLS is the proxy's business here
        uri = "https://" + uri[len("http://") :]
    headers = {k: v for k, v in request.headers.items()}
    if json_body:
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            data = None
        return Incoming(request.method, uri, headers, data if isinstance(data, dict) else {})
    source = request.query if request.method == "GET" else await request.post()
    lists: dict[str, list[Any]] = {}
    for key, value in source.items():
        if isinstance(value, str):
            lists.setdefault(key, []).append(value)
    data = {k: v[0] for k, v in lists.items()}
    return Incoming(request.method, uri, headers, data, lists)


def _respond(out: Outgoing) -> web.Response:
    status, body, headers = out
    if isinstance(body, dict) and "error" in body:
        body = {"code": status, "msg": body.get("error_description") or body["error"], **body}
    text = json.dumps(body) if isinstance(body, dict) else str(body or "")
    response = web.Response(status=status, text=text, headers=dict(headers))
    if isinstance(body, dict):
        response.content_type = "application/json"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# ---- metadata ---------------------------------------------------------------------------------------
@routes.get("/.well-known/oauth-authorization-server")
@routes.get("/.well-known/oauth-authorization-server/{tail:.+}")
@routes.get("/.well-known/openid-configuration")
@routes.get("/.well-known/openid-configuration/{tail:.+}")
async def as_metadata(request: web.Request) -> web.StreamResponse:
    if not _serves_as_metadata(request):
        return _not_found()
    return _cors(web.json_response(request.app[MCP_AUTH].metadata()))


@routes.get("/.well-known/oauth-protected-resource/{tail:.+}")
async def pr_metadata(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS].current
    path = _pr_path(request)
    if path is None:
        return _not_found()
    return _cors(web.json_response(protected_resource_metadata(settings.config, settings.public_url, path)))


# ---- /oauth2/authorize --------------------------------------------------------------------------------
async def _consent_grant(server: McpAuthServer, incoming: Incoming, user: str | None) -> Any:
    return await server.call(server.get_consent_grant, incoming, user)


async def _error_answer(
    request: web.Request, server: McpAuthServer, incoming: Incoming, error: Any
) -> web.Response:
    """An error after validation: to the client's redirect URI when it was checked, else a page."""
    out = await server.call(server.handle_error_response, server.create_oauth2_request(incoming), error)
    if any(name.lower() == "location" for name, _ in out[2]):
        server.issuer.add_issuer_parameter(server, out)
        return _respond(out)
    branding = request.app[SETTINGS].current.config.api.branding
    text = str(getattr(error, "description", "") or getattr(error, "error", "the request is not valid"))
    return pages.message(branding, "This sign-in request cannot be used", text, status=400)


@routes.get("/oauth2/authorize")
async def authorize(request: web.Request) -> web.StreamResponse:
    from authlib.oauth2.rfc6749 import OAuth2Error

    from engine.api.login_routes import visitor

    if not _uses_oauth(request):
        return _not_found()
    server = request.app[MCP_AUTH]
    incoming = await _incoming(request)
    try:
        grant = await _consent_grant(server, incoming, None)
    except OAuth2Error as error:
        return await _error_answer(request, server, incoming, error)
    who = await visitor(request)
    public_url = request.app[SETTINGS].current.public_url
    if who is None:
        next_path = request.path_qs
        if len(next_path) > 1024:
            branding = request.app[SETTINGS].current.config.api.branding
            return pages.message(
                branding, "This sign-in request is too long", "Ask the app to try again.", status=400
            )
        location = f"{public_url}/login?next={quote(next_path, safe='/')}"
        return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
    user = who.session.user_id
    client = grant.client
    remembered = await request.app[STORE].mcp_oauth.consented(user, client.client_id)
    if remembered is not None and set(grant.request.scope.split()) <= remembered:
        _consent_event(request, grant, user, True, remembered=True)
        out = await server.call(server.create_authorization_response, grant.request, user, grant)
        return _respond(out)
    return _consent_page(request, grant, incoming, who)


def _consent_page(request: web.Request, grant: Any, incoming: Incoming, who: Any) -> web.Response:
    e = html.escape
    settings = request.app[SETTINGS].current
    client = grant.client
    redirect = grant.redirect_uri
    parts = urlsplit(redirect)
    hidden = "".join(
        f'<input type=hidden name="{e(k, quote=True)}" value="{e(v, quote=True)}">'
        for k, v in incoming.data.items()
        if k not in FORM_ONLY
    )
    scopes = "".join(f"<li>{e(SCOPE_TEXT.get(s, s))}</li>" for s in grant.request.scope.split())
    kind = {
        "metadata_document": "its metadata document at",
        "registered": "registered itself as",
        "config": "listed by your administrators as",
    }
    body = (
        f"<p><b>{e(client.name)}</b> wants to act for you, <b>{e(who.session.user_id)}</b>.</p>"
        f"<p class=meta>The app is {e(kind.get(client.kind, ''))} {e(client.client_id)}. "
        f"After you answer you will be sent to <b>{e(parts.hostname or '')}</b>.</p>"
        f"<p>It asks to:</p><ul>{scopes}</ul>"
        f'<form method=post action="{e(settings.base_path, quote=True)}/oauth2/authorize">{hidden}'
        f'<input type=hidden name=csrf_token value="{e(who.csrf, quote=True)}">'
        "<p><label><input type=checkbox name=remember value=1> Remember my answer for this app</label></p>"
        "<button class=primary type=submit name=decision value=allow>Allow</button>"
        "<button type=submit name=decision value=deny>Deny</button></form>"
    )
    target = f"{parts.scheme}://{parts.netloc}"
    return pages.page(
        settings.config.api.branding,
        "Allow access?",
        body,
        who=who.session.user_id,
        csrf=who.csrf,
        form_targets=target,
        base=settings.base_path,
    )


@routes.post("/oauth2/authorize")
async def consent(request: web.Request) -> web.StreamResponse:
    from authlib.oauth2.rfc6749 import OAuth2Error

    from engine.api.login_routes import visitor
    from engine.login.web import csrf_ok

    if not _uses_oauth(request):
        return _not_found()
    server = request.app[MCP_AUTH]
    incoming = await _incoming(request)
    who = await visitor(request)
    branding = request.app[SETTINGS].current.config.api.branding
    if who is None or not csrf_ok(who.token, incoming.data.get("csrf_token")):
        return pages.message(
            branding, "Request refused", "This form has expired or did not come from this site.", status=403
        )
    decision = incoming.data.get("decision")
    oauth = Incoming(
        "GET",
        incoming.uri,
        incoming.headers,
        {k: v for k, v in incoming.data.items() if k not in FORM_ONLY},
        {k: v for k, v in incoming.lists.items() if k not in FORM_ONLY},
    )
    try:
        grant = await _consent_grant(server, oauth, who.session.user_id)
    except OAuth2Error as error:
        return await _error_answer(request, server, oauth, error)
    user = who.session.user_id if decision == "allow" else None
    remember = user is not None and incoming.data.get("remember") == "1"
    if user is not None and remember:
        await request.app[STORE].mcp_oauth.remember_consent(user, grant.client.client_id, grant.request.scope)
    _consent_event(request, grant, who.session.user_id, user is not None, remembered=remember)
    out = await server.call(server.create_authorization_response, grant.request, user, grant)
    return _respond(out)


def _consent_event(request: web.Request, grant: Any, user: str, allowed: bool, *, remembered: bool) -> None:
    request.app[EVENTS].publish(
        McpAuthEvent(
            name="mcp_oauth.consent_given" if allowed else "mcp_oauth.consent_denied",
            outcome="success" if allowed else "denied",
            client_id=grant.client.client_id,
            user_id=user,
            resource=getattr(grant.request, "resource", None),
            remembered=remembered if allowed else None,
        )
    )


# ---- token, registration, revocation -----------------------------------------------------------------
@routes.post("/oauth2/token")
async def token(request: web.Request) -> web.StreamResponse:
    if not _uses_oauth(request):
        return _not_found()
    server = request.app[MCP_AUTH]
    incoming = await _incoming(request)
    return _cors(_respond(await server.call(server.create_token_response, incoming)))


@routes.post("/oauth2/register")
async def register(request: web.Request) -> web.StreamResponse:
    if not _registration_open(request):
        return _not_found()
    server = request.app[MCP_AUTH]
    incoming = await _incoming(request, json_body=True)
    return _cors(
        _respond(await server.call(server.create_endpoint_response, "client_registration", incoming))
    )


@routes.post("/oauth2/revoke")
async def revoke(request: web.Request) -> web.StreamResponse:
    if not _uses_oauth(request):
        return _not_found()
    server = request.app[MCP_AUTH]
    incoming = await _incoming(request)
    return _cors(_respond(await server.call(server.create_endpoint_response, "revocation", incoming)))


for _path, _methods, _serving in (
    ("/.well-known/oauth-authorization-server", "GET, HEAD", _serves_as_metadata),
    ("/.well-known/oauth-authorization-server/{tail:.+}", "GET, HEAD", _serves_as_metadata),
    ("/.well-known/openid-configuration", "GET, HEAD", _serves_as_metadata),
    ("/.well-known/openid-configuration/{tail:.+}", "GET, HEAD", _serves_as_metadata),
    ("/.well-known/oauth-protected-resource/{tail:.+}", "GET, HEAD", _serves_pr_metadata),
    ("/oauth2/token", "POST", _uses_oauth),
    ("/oauth2/register", "POST", _registration_open),
    ("/oauth2/revoke", "POST", _uses_oauth),
):
    routes.route("OPTIONS", _path)(_preflight(_methods, _serving))


def _query(data: dict[str, Any]) -> str:
    return urlencode(data)
