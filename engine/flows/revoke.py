"""Disconnect: make a grant unusable at once, revoke it at the provider (RFC 7009), delete it.

Every revocation ends in one of three outcomes, said the same way by the admin API, the CLI, the
audit record (``grant.revoked`` / ``grant.revoke_failed``) and the log:

- ``revoked``: the provider revoked the tokens (or refused them as already invalid); deleted.
- ``retry_later``: the provider could not be reached; the grant stays ``revoked`` (unusable) and
  the reaper retries (SECURITY.md 26).
- ``not_revoked_at_provider``: the grant's provider is no longer configured (reason
  ``provider_not_configured``), or its tokens cannot be read (``unreadable``: a sealed value that does
  not decrypt), so nothing could be revoked there; the grant is deleted here, and the tokens stay
  valid at the provider until they expire or the user removes the app there.

:class:`Revoker` is the one way to do it: the admin API, ``keyturn grants revoke`` and the reaper's
retries all call :meth:`Revoker.revoke`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from engine.errors import ProviderError
from engine.events import GrantEvent, Publish, discard
from engine.oauth.client import OAuthClient
from engine.providers.model import Provider
from engine.store.grants import UNREADABLE
from engine.store.records import GrantRecord
from engine.store.store import Store

log = structlog.get_logger("keyturn.flows")

REVOKED = "revoked"
RETRY_LATER = "retry_later"
NOT_REVOKED_AT_PROVIDER = "not_revoked_at_provider"


@dataclasses.dataclass(frozen=True)
class Revocation:
    grant_id: str
    provider_id: str
    outcome: str  # REVOKED | RETRY_LATER | NOT_REVOKED_AT_PROVIDER
    reason: str | None = None

    @property
    def deleted(self) -> bool:
        return self.outcome != RETRY_LATER

    def answer(self) -> dict[str, Any]:
        """The JSON an API caller gets when the outcome is not a plain success."""
        out: dict[str, Any] = {
            "id": self.grant_id,
            "provider_id": self.provider_id,
            "outcome": self.outcome,
            "deleted": self.deleted,
            "revoked_at_provider": self.outcome == REVOKED,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.outcome == NOT_REVOKED_AT_PROVIDER:
            why = (
                "its stored tokens could not be read"
                if self.reason == "unreadable"
                else f"{self.provider_id!r} is no longer configured"
            )
            out["msg"] = (
                f"deleted here, but not revoked at the provider: {why}; its tokens stay valid there "
                "until they expire"
            )
        return out


class Revoker:
    """Disconnects grants; ``providers`` is read anew per call (SIGHUP reload).

    Each outcome is published as a grant event (the flow status cache forgets on it).
    """

    def __init__(
        self,
        *,
        store: Store,
        oauth: OAuthClient,
        providers: Callable[[], Mapping[str, Provider]],
        publish: Publish = discard,
    ) -> None:
        self.store = store
        self.oauth = oauth
        self.providers = providers
        self.publish = publish

    async def revoke(self, grant_id: str) -> Revocation | None:
        """Disconnect ``grant_id``; None when there is no such grant."""
        return await revoke_grant(
            store=self.store,
            oauth=self.oauth,
            providers=self.providers(),
            publish=self.publish,
            grant_id=grant_id,
        )


async def revoke_grant(
    *,
    store: Store,
    oauth: OAuthClient,
    providers: Mapping[str, Provider],
    publish: Publish,
    grant_id: str,
) -> Revocation | None:
    """Revoke ``grant_id`` (None when there is no such grant); see the module docstring."""
    grant = await store.grants.get(grant_id)
    if grant is None:
        return None
    await store.grants.set_status(grant.id, "revoked")
    provider = providers.get(grant.provider_id)
    if provider is None or grant.status == UNREADABLE:
        reason = "provider_not_configured" if provider is None else UNREADABLE
        await store.grants.delete(grant.id)
        publish(
            GrantEvent(
                name="grant.revoked",
                outcome="failure",
                reason=reason,
                revoked_at_provider=False,
                user_id=grant.user_id,
                provider=grant.provider_id,
            )
        )
        log.warning(
            "grant_not_revoked_at_provider", grant_id=grant.id, provider=grant.provider_id, reason=reason
        )
        return Revocation(grant.id, grant.provider_id, NOT_REVOKED_AT_PROVIDER, reason)
    if provider.api_key is not None:  # an entered key: nothing to call; deleting it is disconnecting
        await store.grants.delete(grant.id)
        publish(
            GrantEvent(
                name="grant.revoked",
                outcome="success",
                reason="api_key_deleted",
                revoked_at_provider=False,
                user_id=grant.user_id,
                provider=grant.provider_id,
            )
        )
        return Revocation(grant.id, grant.provider_id, REVOKED)
    try:
        await _revoke_tokens(oauth, provider, grant)
    except ProviderError as exc:
        if exc.retryable:
            publish(
                GrantEvent(
                    name="grant.revoke_failed",
                    outcome="error",
                    reason=exc.kind,
                    user_id=grant.user_id,
                    provider=grant.provider_id,
                )
            )
            return Revocation(grant.id, grant.provider_id, RETRY_LATER, exc.kind)
        # a definite refusal (e.g. token already invalid) means there is nothing left to revoke
    await store.grants.delete(grant.id)
    publish(
        GrantEvent(
            name="grant.revoked",
            outcome="success",
            revoked_at_provider=True,
            user_id=grant.user_id,
            provider=grant.provider_id,
        )
    )
    return Revocation(grant.id, grant.provider_id, REVOKED)


async def _revoke_tokens(oauth: OAuthClient, provider: Provider, grant: GrantRecord) -> None:
    """RFC 7009: revoke the refresh token, then the access token."""
    if grant.refresh_token:
        await oauth.revoke(provider, grant.refresh_token, token_type_hint="refresh_token")
    if grant.access_token:
        await oauth.revoke(provider, grant.access_token, token_type_hint="access_token")
