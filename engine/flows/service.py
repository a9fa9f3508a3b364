"""The authorization handshake: authorize, start, callback, confirm_user, status (DESIGN.md "HTTP API").

A flow is created by ``authorize`` and handed out as ``{public_url}/v1/oauth/start/{flow_id}``. Each
visit of that URL makes a fresh state (256 bits; only its SHA-256 is stored) and redirects to the
provider; the browser's leg (start, callback) is :mod:`engine.flows.browser`, the pure callback
checks :mod:`engine.oauth.callback`, the end of a flow :mod:`engine.flows.finish`, the grant's
writing :mod:`engine.grants.writer`. Answers are records (:mod:`engine.flows.results`); the API
edge makes Arcade's JSON of them (:mod:`engine.api.shapes`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, assert_never

import structlog

from engine.clock import now_utc
from engine.config.compat import redirect_uri
from engine.errors import BadRequest, KeyturnError, NotFound, UserMismatch
from engine.events import AccessEvent, Event, GrantEvent, GrantName
from engine.flows import reuse
from engine.flows.apikey import KeyEntry, KeyForm
from engine.flows.browser import BrowserLeg
from engine.flows.deps import FlowDeps, flow_event
from engine.flows.finish import FlowEnd
from engine.flows.nexturi import check_next_uri
from engine.flows.results import Authorization, AuthStatus, CallbackResult
from engine.oauth.tokens import TokenSet
from engine.providers.model import Provider
from engine.providers.resolve import resolve_provider
from engine.store.ratehits import SharedLimiter
from engine.store.records import FlowRecord, GrantRecord

__all__ = ["FlowDeps", "FlowService"]

log = structlog.get_logger("keyturn.flows")

PENDING_STATES = ("pending", "verifying")
_FLOW_STATUS: dict[str, AuthStatus] = {"pending": "pending", "verifying": "pending", "completed": "completed"}
# seconds a finished status answer is served from memory (other replicas see a change at most this late)
ANSWER_CACHE_TTL = 5.0
ANSWER_CACHE_SIZE = 100_000


class FlowService:
    def __init__(self, deps: FlowDeps) -> None:
        self.d = deps
        rl = deps.config().security.rate_limiting
        # counted in the database: every process and replica sees the same counts
        self.limiter = SharedLimiter(
            lambda: deps.store.rate_hits, "auth", rl.max_auth_attempts, rl.window_minutes * 60.0
        )
        # finished status answers (completed/failed), by id, for ANSWER_CACHE_TTL seconds
        self._answers: dict[str, tuple[float, Authorization]] = {}
        self._starting = reuse.KeyedLocks()  # identical authorizes wait for each other
        self.end = FlowEnd(deps, self.forget_answers)
        self.browser = BrowserLeg(deps, self.end)
        self.keys = KeyEntry(deps, self.browser)

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
        account: str | None = None,
    ) -> Authorization:
        """The user's authorization: completed when a grant covers ``scopes``, else a (reused) flow.

        ``account`` names one of the user's accounts at the provider; without it, the default one
        (a new user's first account is ``default``).
        """
        config = self.d.config()
        provider = self.find_provider(requirement)
        next_uri = check_next_uri(next_uri, config.security.next_uri_allowlist)
        if provider.api_key is not None:
            scopes = ()  # a key has no scopes
        grant = await self.d.store.grants.find(user_id, provider.id, account)
        if grant is not None and grant.status == "active" and set(scopes) <= set(grant.scopes):
            return self._grant_result(grant, provider)
        account = account or (grant.account if grant is not None else "default")
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
            account=account,
        )
        limiter_key = (user_id, provider.id)

        async def count_new() -> str | None:
            if not config.security.rate_limiting.enabled:
                return None
            try:
                return await self.limiter.hit(
                    limiter_key, what="authorization attempts for this user and provider"
                )
            except KeyturnError:
                self.d.publish(AccessEvent(name="rate_limited", user_id=user_id, provider=provider.id))
                raise

        flow, created = await reuse.find_or_start(
            self.d.store,
            self._starting,
            key,
            valid_after=now_utc() + timedelta(seconds=reuse.min_left(ttl)),
            count_new=count_new,
            refund=self._refund,
            user_id=user_id,
            provider_id=provider.id,
            scopes=wanted,
            code_verifier=secrets.token_urlsafe(64) if provider.api_key is None else None,
            nonce=secrets.token_urlsafe(32) if oidc else None,
            redirect_uri=self.redirect_uri(),
            next_uri=next_uri,
            expires_at=now_utc() + timedelta(seconds=ttl),
            account=account,
        )
        if not created:  # asked again: the same flow and link, not counted as a new attempt
            return self._flow_result(flow)
        self.d.publish(flow_event("flow.started", "success", flow))
        return self._flow_result(flow)

    def redirect_uri(self) -> str:
        # security.oauth.redirect_urls (checked to be a callback under api.public_url): the one registered
        return redirect_uri(self.d.config()) or f"{self.d.public_url()}/v1/oauth/callback"

    async def _refund(self, counted: object) -> None:
        if isinstance(counted, str):
            await self.limiter.refund(counted)

    def _grant_result(
        self, grant: GrantRecord, provider: Provider, *, flow_id: str | None = None
    ) -> Authorization:
        token = None
        if self.d.config().security.token_exposure == "api" and grant.status == "active":
            token = grant.access_token
            exposed = GrantEvent(
                name="token.exposed", outcome="success", user_id=grant.user_id, provider=provider.id
            )
            self.d.publish(exposed)
        return Authorization(
            id=flow_id or grant.id,
            status="completed" if grant.status == "active" else "failed",
            provider_id=provider.id,
            user_id=grant.user_id,
            scopes=tuple(grant.scopes),
            token=token,
        )

    def _flow_result(self, flow: FlowRecord) -> Authorization:
        status = _FLOW_STATUS.get(flow.status, "failed")
        url = f"{self.d.public_url()}/v1/oauth/start/{flow.id}" if flow.status == "pending" else None
        return Authorization(
            id=flow.id,
            status=status,
            provider_id=flow.provider_id,
            user_id=flow.user_id,
            scopes=tuple(flow.scopes),
            url=url,
        )

    # ---- status ------------------------------------------------------------------------------
    async def status(self, auth_id: str, wait: float) -> Authorization:
        """A flow's (or grant's) status; with ``wait`` hold until it is completed or failed."""
        if wait <= 0:  # nothing to wait for: no watch
            return await self._status_once(auth_id)
        deadline = now_utc() + timedelta(seconds=wait)
        while True:
            with self.d.waiters.watch(auth_id) as watch:  # before the read: a completion meanwhile wakes it
                answer = await self._status_once(auth_id)
                remaining = (deadline - now_utc()).total_seconds()
                if answer.status != "pending" or remaining <= 0:
                    return answer
                await watch.wait(remaining)

    async def _status_once(self, auth_id: str) -> Authorization:
        cached = self._answers.get(auth_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        answer = await self._status_uncached(auth_id)
        if answer.status != "pending" and answer.token is None:
            self._remember(auth_id, answer)
        return answer

    def _remember(self, auth_id: str, answer: Authorization) -> None:
        """Keep a finished answer for a moment: agents poll status in tight loops."""
        if len(self._answers) >= ANSWER_CACHE_SIZE:
            self._answers.clear()
        self._answers[auth_id] = (time.monotonic() + ANSWER_CACHE_TTL, answer)

    async def _status_uncached(self, auth_id: str) -> Authorization:
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
            return self._grant_result(grant, provider)
        if flow.status in PENDING_STATES and flow.expires_at <= now_utc():
            if await self.d.store.flows.finish(
                flow.id, status="expired", expected_status=flow.status, error="expired"
            ):
                self.end.notify(flow.id)
            flow = await self.d.store.flows.get(auth_id) or flow
        if flow.status == "completed" and flow.grant_id:
            grant = await self.d.store.grants.get(flow.grant_id)
            provider = self.d.providers().get(flow.provider_id)
            if grant is not None and provider is not None:
                return self._grant_result(grant, provider, flow_id=flow.id)
        return self._flow_result(flow)

    # ---- browser -------------------------------------------------------------------------------
    async def start(self, flow_id: str) -> CallbackResult | KeyForm:
        """``/v1/oauth/start/{flow_id}``: a fresh state and the redirect to the provider (an api_key
        provider's flow: the key form, :mod:`engine.flows.apikey`)."""
        form = await self.keys.open(flow_id)
        return form if form is not None else await self.browser.start(flow_id)

    async def submit_key(self, flow_id: str, form: Mapping[str, str]) -> CallbackResult | KeyForm:
        """The key form posted back: stored (then like a callback), or the form again with an error."""
        return await self.keys.submit(flow_id, form)

    async def callback(
        self, params: Mapping[str, str], *, provider_hint: str | None = None
    ) -> CallbackResult:
        """The provider's redirect back: the flow completed, held for confirmation, or failed."""
        return await self.browser.callback(params, provider_hint=provider_hint)

    def forget_answers(self) -> None:
        """A grant changed somewhere: drop every remembered status answer."""
        self._answers.clear()

    def on_event(self, event: Event) -> None:
        """The event stream's subscriber: a grant whose status changed makes remembered answers stale."""
        if isinstance(event, GrantEvent) and changes_status(event.name):
            self.forget_answers()

    # ---- confirm_user --------------------------------------------------------------------------
    async def confirm_user(self, flow_id: str, user_id: str) -> FlowRecord:
        """The custom verifier names the signed-in user: store the held grant; the flow record back."""
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
            self.d.publish(flow_event("user.mismatch", "denied", flow))
            self.end.notify(flow.id)
            raise UserMismatch("the signed-in user is not the user this authorization was started for")
        held = await self.d.store.flows.take_pending_tokens(flow.id)
        if held is None:
            raise BadRequest(f"flow {flow_id!r} was already confirmed", error="invalid_state")
        raw_tokens, user_info = held
        subject = raw_tokens.pop("subject", None)
        tokens = TokenSet.from_json(raw_tokens)
        subject = str(subject) if subject is not None else None
        grant = await self.end.store_grant(flow, provider, tokens, subject, user_info or {})
        if not await self.d.store.flows.finish(
            flow.id, status="completed", expected_status="verifying", grant_id=grant.id
        ):
            raise BadRequest(f"flow {flow_id!r} was already confirmed", error="invalid_state")
        self.d.publish(flow_event("user.verified", "success", flow))
        self.end.completed(flow, provider)
        return flow


def changes_status(name: GrantName) -> bool:
    """Whether a grant event changes what a status answer says (completed vs failed)."""
    match name:
        case "grant.needs_reauth" | "grant.revoked" | "grant.revoke_failed" | "grant.unreadable":
            return True
        case "grant.refreshed" | "grant.refresh_failed" | "token.exposed":
            return False
        case _:
            assert_never(name)
