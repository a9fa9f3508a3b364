"""The browser's leg of a flow: the start link (a fresh state, a redirect) and the provider's callback.

The callback consumes the state atomically (single use), runs the checks of
:mod:`engine.oauth.callback` (``error=``, ``iss``, the id_token's nonce, user info ``sub``),
exchanges the code once with the PKCE verifier, and stores the grant — or, with a custom user
verifier, holds the tokens encrypted on the flow until ``confirm_user`` names the same user.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog

from engine.clock import now_utc
from engine.errors import ProviderError
from engine.flows.deps import FlowDeps
from engine.flows.finish import FlowEnd
from engine.flows.results import CallbackResult
from engine.oauth import callback as checks
from engine.oauth.callback import CallbackError, state_hash
from engine.oauth.tokens import TokenSet
from engine.providers.model import Provider
from engine.store.records import FlowRecord

log = structlog.get_logger("keyturn.flows")


class BrowserLeg:
    def __init__(self, deps: FlowDeps, end: FlowEnd) -> None:
        self.d = deps
        self.end = end

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
            return await self.end.failed(flow, "invalid_request", "the callback path names another provider")
        provider = self.d.providers().get(flow.provider_id)
        if provider is None:
            return await self.end.failed(flow, "unknown_provider", "the provider is no longer configured")
        try:
            checks.check_error(params)
            endpoints = await self.d.oauth.endpoints(provider)
            code = checks.authorization_code(
                params,
                state_hash=state_hash(state),
                issuer=endpoints.issuer,
                iss_required=endpoints.iss_parameter_supported,
            )
            tokens = await self.d.oauth.exchange_code(
                provider, code=code, redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier
            )
            claims: dict[str, Any] | None = None
            # without an issuer the provider is plain OAuth 2 (Microsoft's multi-tenant template): an
            # id_token it sends anyway cannot be checked, so it is not trusted; user info names the user
            if tokens.id_token and provider.oauth2.issuer is not None:
                claims = await self.d.oauth.validate_id_token(provider, tokens.id_token, nonce=flow.nonce)
            checks.check_id_token(claims, nonce=flow.nonce)
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
            who = checks.identity(
                id_claims=claims,
                nonce=flow.nonce,
                user_info=user_info,
                user_id_path=provider.oauth2.user_id_path,
                token_subject=tokens.subject,
            )
        except CallbackError as exc:
            return await self.end.failed(flow, exc.error, exc.description, provider_error=exc.from_provider)
        except ProviderError as exc:
            return await self.end.failed(flow, exc.kind, exc.msg, provider_error=True)
        return await self.finish(flow, provider, tokens, who.subject, who.user_info)

    async def finish(
        self,
        flow: FlowRecord,
        provider: Provider,
        tokens: TokenSet,
        subject: str | None,
        user_info: Mapping[str, Any],
    ) -> CallbackResult:
        """Credentials in hand (a code exchanged, an API key entered): hold them for the user verifier,
        or store the grant and complete the flow."""
        verifier = self.d.config().security.user_verifier
        # mode login: the engine's own /login/verify (engine.api.login_routes) checks the signed-in user
        verify_url = f"{self.d.public_url()}/login/verify" if verifier.mode == "login" else verifier.url
        if verifier.mode in ("custom", "login") and verify_url:
            held = await self.d.store.flows.finish(
                flow.id,
                status="verifying",
                expected_status="pending",
                pending_tokens={**tokens.to_json(), "subject": subject},
                pending_user_info=dict(user_info) or None,
            )
            if not held:
                return CallbackResult("expired", message="This sign-in attempt was already completed.")
            sep = "&" if "?" in verify_url else "?"
            return CallbackResult(
                "verifying", redirect=f"{verify_url}{sep}flow_id={flow.id}", flow_id=flow.id
            )
        grant = await self.end.store_grant(flow, provider, tokens, subject, user_info)
        if not await self.d.store.flows.finish(
            flow.id, status="completed", expected_status="pending", grant_id=grant.id
        ):
            return CallbackResult("expired", message="This sign-in attempt was already completed.")
        self.end.completed(flow, provider)
        return CallbackResult(
            "completed",
            message=f"You are connected to {provider.description or provider.id}.",
            flow_id=flow.id,
            next_uri=flow.next_uri,
            redirect=flow.next_uri,
        )
