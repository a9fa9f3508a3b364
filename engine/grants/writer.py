"""The one place a grant's tokens are written, and the one refresh schedule.

A completed flow (:meth:`GrantWriter.store_new`) and a refresh (:meth:`GrantWriter.store_refreshed`)
both write tokens with the schedule of :func:`next_refresh_at`: ``refresh_lead`` before the token
expires (``expires_in``, or RFC 7662 introspection's ``exp`` when the answer has none), else
``max_token_age`` after now, else never. A provider's ``refresh_lead`` / ``max_token_age`` override
the ``lifecycle`` ones whenever they are set (``0`` included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.clock import now_utc
from engine.config.model import Config
from engine.grants.batch import WriteBatch
from engine.oauth.client import OAuthClient
from engine.oauth.tokens import TokenSet
from engine.providers.model import Provider
from engine.store.outbox import connection_event
from engine.store.records import GrantRecord, OutboxEvent, TokenUpdate
from engine.store.store import Store


def next_refresh_at(
    expires_at: datetime | None,
    lead: float,
    max_age: float | None,
    now: datetime,
    *,
    refreshable: bool = True,
) -> datetime | None:
    """When a grant should next be refreshed: ``lead`` before expiry, or ``max_age`` after now.

    Never (None) for a grant without a refresh token (``refreshable`` False).
    """
    if not refreshable:
        return None
    if expires_at is not None:
        return expires_at - timedelta(seconds=lead)
    if max_age:
        return now + timedelta(seconds=max_age)
    return None


def lead_for(provider: Provider, config: Config) -> float:
    """Seconds before expiry to refresh: the provider's ``refresh_lead``, else ``lifecycle.refresh_lead``."""
    lead = provider.refresh_lead if provider.refresh_lead is not None else config.lifecycle.refresh_lead
    return float(lead)


def max_age_for(provider: Provider, config: Config) -> float | None:
    """For tokens without an expiry: the provider's ``max_token_age``, else ``lifecycle.max_token_age``."""
    age = provider.max_token_age if provider.max_token_age is not None else config.lifecycle.max_token_age
    return float(age) if age is not None else None


def grant_event(kind: str, grant: GrantRecord, *, reason: str | None = None) -> OutboxEvent:
    """The webhook event ``kind`` about ``grant`` (ids, user, provider, scopes, status; no token)."""
    return connection_event(
        kind,
        grant_id=grant.id,
        user_id=grant.user_id,
        provider=grant.provider_id,
        scopes=grant.scopes,
        status=grant.status,
        reason=reason,
        account=grant.account,
    )


def failing_since(grant: GrantRecord) -> datetime:
    """Since when a grant's refreshes may have been failing: its last good refresh, else its creation."""
    return grant.refreshed_at or grant.created_at


def reported_failing(grant: GrantRecord, config: Config) -> bool:
    """Whether ``connection.refresh_failing`` was written for the grant's current run of failures.

    It is written at the first failure more than ``lifecycle.failure_report_after`` after
    :func:`failing_since`; each failure stamps ``updated_at``, so the last one says it.
    """
    if grant.refresh_failures <= 0:
        return False
    window = float(config.lifecycle.failure_report_after)
    return (grant.updated_at - failing_since(grant)).total_seconds() > window


@dataclasses.dataclass(frozen=True)
class Schedule:
    expires_at: datetime | None
    next_refresh_at: datetime | None


class GrantWriter:
    """Writes tokens into the store with their expiry and next refresh (``config`` read per call)."""

    def __init__(self, store: Store, oauth: OAuthClient, config: Callable[[], Config]) -> None:
        self.store = store
        self.oauth = oauth
        self.config = config
        self.batch = WriteBatch(store)  # refreshes finishing together share one transaction

    async def schedule(self, provider: Provider, tokens: TokenSet, *, refreshable: bool) -> Schedule:
        """The token's expiry (asking introspection when the answer has none) and the next refresh."""
        expires_at = now_utc() + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
        if expires_at is None and refreshable and provider.oauth2.token_introspection is not None:
            expires_at = await self.oauth.introspected_expiry(provider, tokens.access_token)
        config = self.config()
        when = next_refresh_at(
            expires_at,
            lead_for(provider, config),
            max_age_for(provider, config),
            now_utc(),
            refreshable=refreshable,
        )
        return Schedule(expires_at, when)

    async def store_new(
        self,
        user_id: str,
        provider: Provider,
        tokens: TokenSet,
        *,
        scopes: Sequence[str],
        subject: str | None,
        user_info: Mapping[str, Any],
        account: str = "default",
    ) -> GrantRecord:
        """A completed flow's tokens: a new grant, or the user's existing one (that account's) made
        active again.

        ``scopes``: what was asked, used when the token answer does not say what was granted.
        """
        plan = await self.schedule(provider, tokens, refreshable=bool(tokens.refresh_token))
        grant: GrantRecord = await self.store.grants.upsert(
            user_id,
            provider.id,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            id_token=tokens.id_token,
            token_type=tokens.token_type,
            expires_at=plan.expires_at,
            scopes=list(tokens.scopes) if tokens.scopes is not None else list(scopes),
            subject=subject,
            user_info=dict(user_info) or None,
            token_metadata=dict(tokens.metadata),
            next_refresh_at=plan.next_refresh_at,
            account=account,
        )
        return grant

    async def store_refreshed(
        self, grant: GrantRecord, provider: Provider, tokens: TokenSet
    ) -> GrantRecord | None:
        """A refresh's tokens, written only if the grant is unchanged since it was read (else None).

        A refresh token not sent back keeps the old one, so the grant stays refreshable. Refreshes
        finishing together are written in one transaction (:mod:`engine.grants.batch`). A grant reported
        failing (``connection.refresh_failing``) writes ``connection.recovered`` with it.
        """
        plan = await self.schedule(provider, tokens, refreshable=True)
        recovered = (
            grant_event("connection.recovered", grant) if reported_failing(grant, self.config()) else None
        )
        update = TokenUpdate(
            grant_id=grant.id,
            expected_version=grant.version,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,  # None keeps the old one
            expires_at=plan.expires_at,
            scopes=list(tokens.scopes) if tokens.scopes is not None else None,
            id_token=tokens.id_token,
            next_refresh_at=plan.next_refresh_at,
            event=recovered,
        )
        return await self.batch.update(update)
