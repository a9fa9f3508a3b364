"""Sign a person in at the ``login.provider`` (authorization code + PKCE + nonce) and name the user.

The user is the ``login.user_claim`` of the validated id_token (user info adds claims the id_token
lacks; its ``sub`` must be the id_token's). ``email`` counts only with ``email_verified: true`` and is
lower-cased; ``allowed_domains`` are checked against the verified email's domain. The same
normalisation applies to a flow's ``user_id`` when ``security.user_verifier.mode: login`` compares
them (:func:`normalise`): lower-casing for ``email``, none for any other claim.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from engine.config.model import Config, LoginConfig
from engine.errors import ProviderError
from engine.oauth.client import OAuthClient
from engine.providers.model import Provider
from engine.store.store import Store

log = structlog.get_logger("keyturn.login")

LOGIN_TTL = 600.0  # seconds a sign-in at the provider may take
PROFILE_CLAIMS = frozenset({"preferred_username", "name", "nickname", "given_name", "family_name"})
BINDING_KEY = "login_binding_key"


def normalise(claim: str, value: str) -> str:
    """The form a user id is compared in: e-mail addresses lower-cased, other claims unchanged."""
    return value.strip().lower() if claim == "email" else value


@dataclasses.dataclass(frozen=True)
class SignIn:
    """How a callback ended: ``user_id`` and ``next_path``, or a ``reason`` word and a message."""

    user_id: str | None = None
    next_path: str = "/connections"
    reason: str | None = None
    message: str = ""
    status: int = 400


class LoginService:
    def __init__(
        self,
        *,
        store: Store,
        oauth: OAuthClient,
        config: Callable[[], Config],
        providers: Callable[[], Mapping[str, Provider]],
        public_url: Callable[[], str],
    ) -> None:
        self.store = store
        self.oauth = oauth
        self.config = config
        self.providers = providers
        self.public_url = public_url
        self._binding_key: bytes | None = None

    @property
    def settings(self) -> LoginConfig | None:
        return self.config().login

    def redirect_uri(self) -> str:
        return f"{self.public_url()}/login/callback"

    def provider(self) -> Provider:
        login = self.settings
        provider = self.providers().get(login.provider) if login else None
        if provider is None:
            raise ProviderError("the login provider is not configured", kind="unknown_provider")
        return provider

    def scopes(self, login: LoginConfig) -> tuple[str, ...]:
        wanted = ["openid"]
        if login.user_claim == "email" or login.allowed_domains:
            wanted.append("email")
        if login.user_claim in PROFILE_CLAIMS:
            wanted.append("profile")
        return tuple(wanted)

    async def binding_key(self) -> bytes:
        """A random key per installation (in the meta table) for the verify cookie's HMAC."""
        if self._binding_key is None:
            value = await self.store.meta.get(BINDING_KEY)
            if value is None:
                await self.store.meta.set(BINDING_KEY, secrets.token_hex(32))
                value = await self.store.meta.get(BINDING_KEY)
            self._binding_key = hashlib.sha256(str(value).encode()).digest()
        return self._binding_key

    # ---- /login --------------------------------------------------------------------------------
    async def begin(self, next_path: str) -> tuple[str, str]:
        """``(authorization URL, state)`` for a new sign-in that comes back to ``next_path``."""
        login = self.settings
        assert login is not None
        provider = self.provider()
        endpoints = await self.oauth.endpoints(provider)
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        nonce = secrets.token_urlsafe(32)
        await self.store.logins.create(
            state=state,
            code_verifier=verifier,
            nonce=nonce,
            next_path=next_path,
            expires_at=datetime.now(UTC) + timedelta(seconds=LOGIN_TTL),
        )
        url = self.oauth.authorization_url(
            provider,
            endpoints,
            redirect_uri=self.redirect_uri(),
            state=state,
            scopes=self.scopes(login),
            code_verifier=verifier,
            nonce=nonce,
        )
        return url, state

    # ---- /login/callback -----------------------------------------------------------------------
    async def finish(self, params: Mapping[str, str], bound_state: str | None) -> SignIn:
        login = self.settings
        if login is None:
            return SignIn(reason="not_configured", message="Sign-in is not configured.", status=404)
        state = params.get("state") or ""
        if not state or not bound_state or not secrets.compare_digest(state.encode(), bound_state.encode()):
            # the answer is not for a sign-in this browser started (or its cookie expired)
            return SignIn(reason="state_mismatch", message="This sign-in was not started in this browser.")
        attempt = await self.store.logins.consume(state)
        if attempt is None:
            return SignIn(
                reason="expired", message="This sign-in has expired or was already used.", status=410
            )
        if params.get("error"):
            return SignIn(reason="provider_refused", message="The identity provider refused the sign-in.")
        try:
            provider = self.provider()
            endpoints = await self.oauth.endpoints(provider)
            iss = params.get("iss")
            if endpoints.issuer and (
                (iss is not None and iss != endpoints.issuer)
                or (iss is None and endpoints.iss_parameter_supported)
            ):
                return SignIn(reason="invalid_iss", message="The answer came from another issuer.")
            code = params.get("code")
            if not code:
                return SignIn(reason="invalid_request", message="The identity provider's answer has no code.")
            tokens = await self.oauth.exchange_code(
                provider, code=code, redirect_uri=self.redirect_uri(), code_verifier=attempt.code_verifier
            )
            if not tokens.id_token:
                return SignIn(reason="invalid_id_token", message="The identity provider sent no id_token.")
            claims = dict(await self.oauth.validate_id_token(provider, tokens.id_token, nonce=attempt.nonce))
            needed = {login.user_claim} | ({"email", "email_verified"} if login.allowed_domains else set())
            if login.user_claim == "email":
                needed.add("email_verified")
            if not needed <= claims.keys() and endpoints.userinfo:
                info = await self.oauth.userinfo(provider, tokens.access_token)
                if info.get("sub") != claims.get("sub"):
                    return SignIn(reason="invalid_user_info", message="The user info names another subject.")
                claims = {**info, **claims}
        except ProviderError as exc:
            log.info("login_failed", reason=exc.kind)
            return SignIn(
                reason=exc.kind[:64], message="The identity provider could not sign you in.", status=502
            )
        return self._user(login, claims, attempt.next_path)

    def _user(self, login: LoginConfig, claims: Mapping[str, Any], next_path: str) -> SignIn:
        verified = claims.get("email_verified") in (True, "true")
        email = claims.get("email")
        if login.user_claim == "email" or login.allowed_domains:
            if not isinstance(email, str) or "@" not in email:
                return SignIn(reason="no_email", message="Your account has no e-mail address.", status=403)
            if not verified:
                return SignIn(
                    reason="email_unverified",
                    message="Your e-mail address is not verified at the identity provider.",
                    status=403,
                )
        if login.allowed_domains:
            domain = str(email).rsplit("@", 1)[1].lower()
            if domain not in login.allowed_domains:
                return SignIn(
                    reason="domain_not_allowed",
                    message="Accounts of this domain may not sign in here.",
                    status=403,
                )
        value = claims.get(login.user_claim)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip() or len(value) > 256:
            return SignIn(
                reason="no_user_claim",
                message=f"Your account has no usable {login.user_claim} claim.",
                status=403,
            )
        return SignIn(user_id=normalise(login.user_claim, value), next_path=next_path)
