"""How a flow ends: its grant stored, the flow completed or failed, and everyone waiting told."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from engine.events import FlowEvent
from engine.flows.deps import FlowDeps, flow_event
from engine.flows.results import CallbackResult
from engine.oauth.tokens import TokenSet
from engine.providers.model import Provider
from engine.store.records import FlowRecord, GrantRecord

log = structlog.get_logger("keyturn.flows")


class FlowEnd:
    """``forget`` drops remembered status answers (a grant is about to change)."""

    def __init__(self, deps: FlowDeps, forget: Callable[[], None]) -> None:
        self.d = deps
        self.forget = forget

    async def store_grant(
        self,
        flow: FlowRecord,
        provider: Provider,
        tokens: TokenSet,
        subject: str | None,
        user_info: Mapping[str, Any],
    ) -> GrantRecord:
        """The flow's grant (:class:`engine.grants.writer.GrantWriter`); says when the account changed."""
        previous = await self.d.store.grants.find(flow.user_id, provider.id, flow.account)
        if previous is not None and previous.subject and subject is not None and subject != previous.subject:
            changed = FlowEvent(
                name="reauth.reconnect_sub_changed",
                outcome="success",
                user_id=flow.user_id,
                provider=provider.id,
            )
            self.d.publish(changed)
        self.forget()
        return await self.d.writer.store_new(
            flow.user_id,
            provider,
            tokens,
            scopes=flow.scopes,
            subject=subject,
            user_info=user_info,
            account=flow.account,
        )

    def completed(self, flow: FlowRecord, provider: Provider) -> None:
        self.d.publish(flow_event("flow.completed", "success", flow))
        self.notify(flow.id)

    def notify(self, flow_id: str) -> None:
        """Wake status waiters here and (PostgreSQL NOTIFY) on the other replicas."""
        self.d.waiters.notify(flow_id)
        if self.d.notify is not None:
            self.d.notify(flow_id)

    async def failed(
        self, flow: FlowRecord, error: str, description: str | None, *, provider_error: bool = False
    ) -> CallbackResult:
        await self.d.store.flows.finish(
            flow.id,
            status="failed",
            expected_status=flow.status,
            error=error[:64],
            error_description=(description or "")[:300] or None,
        )
        self.d.publish(flow_event("flow.failed", "failure", flow, reason=error[:64]))
        self.notify(flow.id)
        log.info("flow_failed", flow_id=flow.id, provider=flow.provider_id, reason=error[:64])
        message = "The provider refused the authorization." if provider_error else "The authorization failed."
        return CallbackResult(
            "failed",
            message=message,
            detail=f"{error}: {description}" if description else error,
            flow_id=flow.id,
        )
