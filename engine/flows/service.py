"""The authorization handshake: authorize, start, callback, confirm_user, status (DESIGN.md "HTTP API").

A flow is created by ``authorize`` and handed out as ``{public_url}/v1/oauth/start/{flow_id}``. Each
visit of that URL makes a fresh state (256 bits; only its SHA-256 is stored) and redirects to the
provider. The callback consumes the state atomically (single use), checks ``iss``, exchanges the
code once with the PKCE verifier, validates the id_token and user info, and stores the grant
encrypted — or, with a custom user verifier, holds the tokens encrypted on the flow until
``confirm_user`` names the same user.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from engine.api.nexturi import check_next_uri
from engine.api.ratelimit import SlidingWindowLimiter
from engine.config.compat import redirect_uri
from engine.config.model import Config
from engine.errors import BadRequest, KeyturnError, NotFound, ProviderError, UserMismatch
from engine.flows import reuse, revoke
from engine.flows.revoke import Revocation
from engine.flows.waiters import FlowWaiters
from engine.oauth.client import OAuthClient
from engine.oauth.tokens import TokenSet, get_path
from engine.providers.model import Provider
from engine.providers.resolve import resolve_provider

log = structlog.get_logger("keyturn.flows")

PENDING_STATES = ("pending", "verifying")
# seconds a finished status answer is served from memory (other replicas see a change at most this late)
ANSWER_CACHE_TTL = 5.0
ANSWER_CACHE_SIZE = 100_000


class Emit(Protocol):
    def __call__(self, event: str, *, outcome: str, **fields: Any) -> Any: ...


def _noop_emit(event: str, *, outcome: str, **fields: Any) -> None:
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class CallbackResult:
    """What the browser gets: a redirect (``redirect``) or a page (``page`` kind and texts)."""

    outcome: str  # completed | verifying | failed | expired | invalid
    redirect: str | None = None
    message: str = ""
    detail: str | None = None
    flow_id: str | None = None
    next_uri: str | None = None


@dataclasses.dataclass
class FlowDeps:
    """What the flow service needs; ``config``/``providers`` are read anew per call (SIGHUP reload)."""

    store: Any  # engine.store.Store
    oauth: OAuthClient
    waiters: FlowWaiters
    config: Callable[[], Config]
    providers: Callable[[], Mapping[str, Provider]]
    public_url: Callable[[], str]
    emit: Emit = _noop_emit
    notify: Callable[[str], Any] | None = None  # cross-replica notification (PostgreSQL NOTIFY)
    on_flow: Callable[[str, str], None] | None = None  # (provider, outcome) -> metrics


class FlowService:
    def __init__(self, deps: FlowDeps) -> None:
        self.d = deps
        rl = deps.config().security.rate_limiting
        self.limiter = SlidingWindowLimiter(rl.max_auth_attempts, rl.window_minutes * 60.0)
        # finished status answers (completed/failed), by id, for ANSWER_CACHE_TTL seconds
        self._answers: dict[str, tuple[float, dict[str, Any]]] = {}
        self._starting = reuse.KeyedLocks()  # identical authorizes wait for each other

    # ---- providers -------------------------------------------------------------------------
    def find_provider(self, requirement: Mapping[str, Any]) -> Provider:
        """The provider entry an ``auth_requirement`` names (``engine.providers.resolve``)."""
        return resolve_provider(self.d.providers(), requirement)

    # ---- authorize ---------------------------------------------------------------------------
    async def authorize(
        self,
        *,
        user_id: str,
        requirement: Mapping[str, Any],
        scopes: tuple[str, ...],
        next_uri: str | None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        config = self.d.config()
        provider = self.find_provider(requirement)
        next_uri = check_next_uri(next_uri, config.security.next_uri_allowlist)
        grant = await self.d.store.grants.find(user_id, provider.id)
        if grant is not None and grant.status == "active" and set(scopes) <= set(grant.scopes):
            return self.grant_response(grant, provider)
        wanted: list[str] = []
        for scope in (*provider.oauth2.default_scopes, *(grant.scopes if grant else ()), *scopes):
            if scope not in wanted:
                wanted.append(scope)
        oidc = provider.oauth2.issuer is not None and "openid" in wanted
        ttl = float(config.security.flow_ttl)
        key = reuse.reuse_key(
            user_id=user_id,
            provider_id=provider.id,
            scopes=wanted,
            next_uri=next_uri,
            redirect_uri=self.redirect_uri(),
            oidc=oidc,
        )
        limiter_key = (user_id, provider.id)

        def count_new() -> None:
            if not config.security.rate_limiting.enabled:
                return
            try:
                self.limiter.hit(limiter_key, what="authorization attempts for this user and provider")
            except KeyturnError:
                self.d.emit("rate_limited", outcome="denied", user_id=user_id, provider=provider.id)
                raise

        flow, created = await reuse.find_or_start(
            self.d.store,
            self._starting,
            key,
            valid_after=now_utc() + timedelta(seconds=reuse.min_left(ttl)),
            count_new=count_new,
            refund=lambda: self.limiter.refund(limiter_key),
            user_id=user_id,
            provider_id=provider.id,
            scopes=wanted,
            code_verifier=secrets.token_urlsafe(64),
            nonce=secrets.token_urlsafe(32) if oidc else None,
            redirect_uri=self.redirect_uri(),
            next_uri=next_uri,
            expires_at=now_utc() + timedelta(seconds=ttl),
        )
        if not created:  # asked again: the same flow and link, not counted as a new attempt
            return self.flow_response(flow)
        self.d.emit("flow.started", outcome="success", user_id=user_id, provider=provider.id, flow_id=flow.id)
        return self.flow_response(flow)

    def redirect_uri(self) -> str:
        # security.oauth.redirect_urls (checked to be a callback under api.public_url): the one registered
        return redirect_uri(self.d.config()) or f"{self.d.public_url()}/v1/oauth/callback"

    def grant_response(self, grant: Any, provider: Provider, *, flow_id: str | None = None) -> dict[str, Any]:
        context: dict[str, Any] = {}
        if self.d.config().security.token_exposure == "api" and grant.status == "active":
            context["token"] = grant.access_token
            self.d.emit("token.exposed", outcome="success", user_id=grant.user_id, provider=provider.id)
        return {
            "id": flow_id or grant.id,
            "status": "completed" if grant.status == "active" else "failed",
            "provider_id": provider.id,
            "user_id": grant.user_id,
            "scopes": list(grant.scopes),
            "context": context,
        }

    def flow_response(self, flow: Any) -> dict[str, Any]:
        status = {"pending": "pending", "verifying": "pending", "completed": "completed"}.get(
            flow.status, "failed"
        )
        out: dict[str, Any] = {
            "id": flow.id,
            "status": status,
            "provider_id": flow.provider_id,
            "user_id": flow.user_id,
            "scopes": list(flow.scopes),
            "context": {},
        }
        if flow.status == "pending":
            out["url"] = f"{self.d.public_url()}/v1/oauth/start/{flow.id}"
        return out

    # ---- status ------------------------------------------------------------------------------
    async def status(self, auth_id: str, wait: float) -> dict[str, Any]:
        """A flow's (or grant's) status; with ``wait`` hold until it is completed or failed."""
        deadline = now_utc() + timedelta(seconds=wait)
        while True:
            answer = await self._status_once(auth_id)
            remaining = (deadline - now_utc()).total_seconds()
            if answer["status"] != "pending" or remaining <= 0:
                return answer
            await self.d.waiters.wait(auth_id, remaining)

    async def _status_once(self, auth_id: str) -> dict[str, Any]:
        cached = self._answers.get(auth_id)
        if cached is not None and cached[0] > time.monotonic():
            return dict(cached[1])
        answer = await self._status_uncached(auth_id)
        if answer["status"] != "pending" and "token" not in answer["context"]:
            self._remember(auth_id, answer)
        return answer

    def _remember(self, auth_id: str, answer: dict[str, Any]) -> None:
        """Keep a finished answer for a moment: agents poll status in tight loops."""
        if len(self._answers) >= ANSWER_CACHE_SIZE:
            self._answers.clear()
        self._answers[auth_id] = (time.monotonic() + ANSWER_CACHE_TTL, answer)

    async def _status_uncached(self, auth_id: str) -> dict[str, Any]:
        # ids say what they are (fl_/gr_): one query instead of two for a grant id
        flow = None if auth_id.startswith("gr_") else await self.d.store.flows.get(auth_id)
        if flow is None:
            grant = await self.d.store.grants.get(auth_id)
            if grant is None:
                raise NotFound(f"no authorization {auth_id!r}", error="not_found")
            provider = self.d.providers().get(grant.provider_id)
            if provider is None:
                raise NotFound(
                    f"provider {grant.provider_id!r} is no longer configured", error="unknown_provider"
                )
            return self.grant_response(grant, provider)
        if flow.status in PENDING_STATES and flow.expires_at <= now_utc():
            if await self.d.store.flows.finish(
                flow.id, status="expired", expected_status=flow.status, error="expired"
            ):
                self._notify(flow.id)
            flow = await self.d.store.flows.get(auth_id) or flow
        if flow.status == "completed" and flow.grant_id:
            grant = await self.d.store.grants.get(flow.grant_id)
            provider = self.d.providers().get(flow.provider_id)
            if grant is not None and provider is not None:
                return self.grant_response(grant, provider, flow_id=flow.id)
        return self.flow_response(flow)

    # ---- browser: start ------------------------------------------------------------------------
    async def start(self, flow_id: str) -> CallbackResult:
        flow = await self.d.store.flows.get(flow_id)
        if flow is None:
            return CallbackResult("invalid", message="This sign-in link is not valid.")
        if flow.status != "pending" or flow.expires_at <= now_utc():
            if flow.status == "completed":
                return CallbackResult(
                    "completed", message="You are already connected.", flow_id=flow.id, next_uri=flow.next_uri
                )
            return CallbackResult(
                "expired",
                message="This sign-in link has expired or was already used.",
                detail="Go back to your app and start again.",
                flow_id=flow.id,
            )
        provider = self.d.providers().get(flow.provider_id)
        if provider is None:
            return CallbackResult("failed", message="This provider is no longer configured.", flow_id=flow.id)
        try:
            endpoints = await self.d.oauth.endpoints(provider)
        except ProviderError as exc:
            return CallbackResult(
                "failed", message="The provider cannot be reached.", detail=exc.msg, flow_id=flow.id
            )
        state = secrets.token_urlsafe(32)
        ttl = min(float(self.d.config().security.flow_ttl), (flow.expires_at - now_utc()).total_seconds())
        await self.d.store.flows.set_state(
            flow.id, state_hash(state), now_utc() + timedelta(seconds=max(ttl, 1))
        )
        url = self.d.oauth.authorization_url(
            provider,
            endpoints,
            redirect_uri=flow.redirect_uri,
            state=state,
            scopes=tuple(flow.scopes),
            code_verifier=flow.code_verifier,
            nonce=flow.nonce,
        )
        return CallbackResult("redirect", redirect=url, flow_id=flow.id)

    # ---- browser: callback ---------------------------------------------------------------------
    async def callback(
        self, params: Mapping[str, str], *, provider_hint: str | None = None
    ) -> CallbackResult:
        state = params.get("state")
        if not state:
            return CallbackResult(
                "invalid", message="The provider's answer has no state.", detail="Start again from your app."
            )
        flow = await self.d.store.flows.consume_state(state_hash(state))
        if flow is None:
            return CallbackResult(
                "expired",
                message="This sign-in attempt has expired or was already completed.",
                detail="Start again from your app.",
            )
        if provider_hint is not None and provider_hint != flow.provider_id:
            return await self._fail(flow, "invalid_request", "the callback path names another provider")
        provider = self.d.providers().get(flow.provider_id)
        if provider is None:
            return await self._fail(flow, "unknown_provider", "the provider is no longer configured")
        error = params.get("error")
        if error:
            return await self._fail(flow, error[:64], params.get("error_description"), provider_error=True)
        try:
            endpoints = await self.d.oauth.endpoints(provider)
            issuer = endpoints.issuer
            iss = params.get("iss")
            if issuer is not None and iss is not None and iss != issuer:
                return await self._fail(flow, "invalid_iss", "the answer came from another issuer")
            if issuer is not None and iss is None and endpoints.iss_parameter_supported:
                return await self._fail(flow, "invalid_iss", "the provider's answer is missing iss")
            code = params.get("code")
            if not code:
                return await self._fail(flow, "invalid_request", "the provider's answer has no code")
            tokens = await self.d.oauth.exchange_code(
                provider, code=code, redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier
            )
            claims: dict[str, Any] = {}
            # without an issuer the provider is plain OAuth 2 (Microsoft's multi-tenant template): an
            # id_token it sends anyway cannot be checked, so it is not trusted; user info names the user
            if tokens.id_token and provider.oauth2.issuer is not None:
                claims = await self.d.oauth.validate_id_token(provider, tokens.id_token, nonce=flow.nonce)
            elif flow.nonce is not None:
                return await self._fail(
                    flow, "invalid_id_token", "the provider sent no id_token for an openid request"
                )
            user_info: dict[str, Any] = {}
            if endpoints.userinfo:
                try:
                    user_info = await self.d.oauth.userinfo(provider, tokens.access_token)
                except ProviderError as exc:
                    if not claims or exc.retryable:
                        raise
                    # a validated id_token already names the user; an access token meant for another
                    # resource (RFC 8707) may not be accepted by the user info endpoint
                    log.info("userinfo_skipped", provider=provider.id, reason=exc.kind)
                if claims and "sub" in user_info and user_info["sub"] != claims.get("sub"):
                    return await self._fail(
                        flow, "invalid_user_info", "user info sub differs from the id_token's"
                    )
        except ProviderError as exc:
            return await self._fail(flow, exc.kind, exc.msg, provider_error=True)
        subject = claims.get("sub") or get_path(user_info, provider.oauth2.user_id_path) or tokens.subject
        verifier = self.d.config().security.user_verifier
        if verifier.mode == "custom" and verifier.url:
            held = await self.d.store.flows.finish(
                flow.id,
                status="verifying",
                expected_status="pending",
                pending_tokens={**tokens.to_json(), "subject": str(subject) if subject is not None else None},
                pending_user_info=user_info or claims or None,
            )
            if not held:
                return CallbackResult("expired", message="This sign-in attempt was already completed.")
            sep = "&" if "?" in verifier.url else "?"
            return CallbackResult(
                "verifying", redirect=f"{verifier.url}{sep}flow_id={flow.id}", flow_id=flow.id
            )
        grant = await self._store_grant(flow, provider, tokens, subject, user_info or claims)
        if not await self.d.store.flows.finish(
            flow.id, status="completed", expected_status="pending", grant_id=grant.id
        ):
            return CallbackResult("expired", message="This sign-in attempt was already completed.")
        self._completed(flow, provider)
        return CallbackResult(
            "completed",
            message=f"You are connected to {provider.description or provider.id}.",
            flow_id=flow.id,
            next_uri=flow.next_uri,
            redirect=flow.next_uri,
        )

    async def _store_grant(
        self, flow: Any, provider: Provider, tokens: TokenSet, subject: Any, user_info: Mapping[str, Any]
    ) -> Any:
        previous = await self.d.store.grants.find(flow.user_id, provider.id)
        if (
            previous is not None
            and previous.subject
            and subject is not None
            and str(subject) != previous.subject
        ):
            self.d.emit(
                "reauth.reconnect_sub_changed", outcome="success", user_id=flow.user_id, provider=provider.id
            )
        expires_at = now_utc() + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
        lead = (
            provider.refresh_lead
            if provider.refresh_lead is not None
            else self.d.config().lifecycle.refresh_lead
        )
        next_refresh = (
            expires_at - timedelta(seconds=float(lead)) if expires_at and tokens.refresh_token else None
        )
        if expires_at is None and tokens.refresh_token:
            # no expires_in: ask introspection when configured, else refresh at max_token_age
            if provider.oauth2.token_introspection is not None:
                expires_at = await self.d.oauth.introspected_expiry(provider, tokens.access_token)
                if expires_at is not None:
                    next_refresh = expires_at - timedelta(seconds=float(lead))
            max_age = provider.max_token_age or self.d.config().lifecycle.max_token_age
            if next_refresh is None and max_age:
                next_refresh = now_utc() + timedelta(seconds=float(max_age))
        self.forget_answers()
        return await self.d.store.grants.upsert(
            flow.user_id,
            provider.id,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            id_token=tokens.id_token,
            token_type=tokens.token_type,
            expires_at=expires_at,
            scopes=list(tokens.scopes) if tokens.scopes is not None else list(flow.scopes),
            subject=str(subject) if subject is not None else None,
            user_info=dict(user_info) or None,
            token_metadata=dict(tokens.metadata),
            next_refresh_at=next_refresh,
        )

    def forget_answers(self) -> None:
        """A grant changed somewhere: drop every remembered status answer."""
        self._answers.clear()

    def _completed(self, flow: Any, provider: Provider) -> None:
        self.d.emit(
            "flow.completed", outcome="success", user_id=flow.user_id, provider=provider.id, flow_id=flow.id
        )
        if self.d.on_flow:
            self.d.on_flow(provider.id, "completed")
        self._notify(flow.id)

    def _notify(self, flow_id: str) -> None:
        self.d.waiters.notify(flow_id)
        if self.d.notify is not None:
            self.d.notify(flow_id)

    async def _fail(
        self, flow: Any, error: str, description: str | None, *, provider_error: bool = False
    ) -> CallbackResult:
        await self.d.store.flows.finish(
            flow.id,
            status="failed",
            expected_status=flow.status,
            error=error[:64],
            error_description=(description or "")[:300] or None,
        )
        self.d.emit(
            "flow.failed",
            outcome="failure",
            user_id=flow.user_id,
            provider=flow.provider_id,
            flow_id=flow.id,
            reason=error[:64],
        )
        if self.d.on_flow:
            self.d.on_flow(flow.provider_id, "failed")
        self._notify(flow.id)
        log.info("flow_failed", flow_id=flow.id, provider=flow.provider_id, reason=error[:64])
        message = "The provider refused the authorization." if provider_error else "The authorization failed."
        return CallbackResult(
            "failed",
            message=message,
            detail=f"{error}: {description}" if description else error,
            flow_id=flow.id,
        )

    # ---- disconnect -------------------------------------------------------------------------
    async def revoke_grant(self, grant_id: str) -> Revocation | None:
        """Disconnect ``grant_id`` (:mod:`engine.flows.revoke`); None when there is no such grant."""
        result = await revoke.revoke_grant(
            store=self.d.store,
            oauth=self.d.oauth,
            providers=self.d.providers(),
            emit=self.d.emit,
            grant_id=grant_id,
        )
        self.forget_answers()
        return result

    # ---- confirm_user --------------------------------------------------------------------------
    async def confirm_user(self, flow_id: str, user_id: str) -> dict[str, Any]:
        flow = await self.d.store.flows.get(flow_id)
        if flow is None:
            raise NotFound(f"no flow {flow_id!r}", error="not_found")
        if flow.status != "verifying":
            raise BadRequest(
                f"flow {flow_id!r} is {flow.status}, not waiting for confirmation", error="invalid_state"
            )
        provider = self.d.providers().get(flow.provider_id)
        if provider is None:
            raise NotFound(f"provider {flow.provider_id!r} is no longer configured", error="unknown_provider")
        if not secrets.compare_digest(user_id.encode(), flow.user_id.encode()):
            await self.d.store.flows.take_pending_tokens(flow.id)
            await self.d.store.flows.finish(
                flow.id, status="failed", expected_status="verifying", error="user_mismatch"
            )
            self.d.emit(
                "user.mismatch", outcome="denied", user_id=flow.user_id, provider=provider.id, flow_id=flow.id
            )
            self._notify(flow.id)
            raise UserMismatch("the signed-in user is not the user this authorization was started for")
        held = await self.d.store.flows.take_pending_tokens(flow.id)
        if held is None:
            raise BadRequest(f"flow {flow_id!r} was already confirmed", error="invalid_state")
        raw_tokens, user_info = held
        subject = raw_tokens.pop("subject", None)
        tokens = TokenSet.from_json(raw_tokens)
        grant = await self._store_grant(flow, provider, tokens, subject, user_info or {})
        if not await self.d.store.flows.finish(
            flow.id, status="completed", expected_status="verifying", grant_id=grant.id
        ):
            raise BadRequest(f"flow {flow_id!r} was already confirmed", error="invalid_state")
        self.d.emit(
            "user.verified", outcome="success", user_id=flow.user_id, provider=provider.id, flow_id=flow.id
        )
        self._completed(flow, provider)
        return {"auth_id": flow.id, "next_uri": flow.next_uri}
