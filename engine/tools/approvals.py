"""``tools.approval``: a matching call is held until its user (or the app) decides (SECURITY.md 40).

The first rule whose globs match the tool decides who approves (``user`` on the approval page,
``app`` through ``/v1/approvals``) and how long a request lives (``ttl``). A held call is answered like
an authorization: a pending :class:`Authorization` whose ``id`` is the approval's and whose ``url`` is
``/approvals/{id}``; ``/v1/auth/status?id=&wait=`` waits for the decision (``completed`` once decided
either way, ``failed`` once expired), so ``wait_for_completion`` works unchanged.

An approval is bound to the digest of caller, user, tool and inputs: the retried identical call
finds it; changed inputs need a new one. It is used once, just before the worker is called (a
conditional UPDATE: of two identical retries one runs, the other is held anew); a denial answers
every identical call with the reason until it expires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from engine.clock import now_utc
from engine.config.model import ApprovalRule, Config
from engine.errors import BadRequest, Conflict, Forbidden, NotFound
from engine.events import ApprovalEvent, Publish, discard
from engine.flows.results import Authorization, AuthStatus
from engine.flows.waiters import FlowWaiters
from engine.store.approvals import ApprovalRecord
from engine.tools.access import Caller, tools_allow

MAX_REASON = 500
MAX_AUDIT_REASON = 200  # what of a denial's reason the audit record keeps


@dataclasses.dataclass(frozen=True)
class Hold:
    """What the execute path does with a call: run it (spending ``approved``), hold it, or refuse it."""

    approved: ApprovalRecord | None = None
    pending: Authorization | None = None
    denied: str | None = None  # the message the agent sees


def digest(caller: str, user_id: str, tool_name: str, inputs: Mapping[str, Any]) -> str:
    body = json.dumps(
        {"caller": caller, "user": user_id, "tool": tool_name.lower(), "inputs": inputs},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def caller_name(caller: object) -> str:
    return caller.name if isinstance(caller, Caller) else "anonymous"


class Approvals:
    def __init__(
        self,
        store: Any,  # engine.store.Store
        config: Callable[[], Config],
        public_url: Callable[[], str],
        waiters: FlowWaiters,
        *,
        notify: Callable[[str], Any] | None = None,  # other replicas (PostgreSQL NOTIFY)
        publish: Publish = discard,
    ) -> None:
        self.store = store
        self.config = config
        self.public_url = public_url
        self.waiters = waiters
        self.notify = notify
        self.publish = publish

    def rule(self, tool_name: str) -> ApprovalRule | None:
        return next((r for r in self.config().tools.approval if tools_allow(r.tools, tool_name)), None)

    def url(self, approval_id: str) -> str:
        return f"{self.public_url()}/approvals/{approval_id}"

    def _pending(self, record: ApprovalRecord) -> Authorization:
        return Authorization(
            id=record.id, status="pending", provider_id=None, user_id=record.user_id, scopes=(),
            url=self.url(record.id),
        )  # fmt: skip

    def _event(self, name: Any, record: ApprovalRecord, **fields: Any) -> None:
        self.publish(
            ApprovalEvent(
                name=name, user_id=record.user_id, tool=record.tool_name, approval_id=record.id, **fields
            )
        )

    # ---- the execute path --------------------------------------------------------------------------
    async def hold(
        self, tool_name: str, inputs: Mapping[str, Any], user_id: str | None, caller: object
    ) -> Hold | None:
        """None when no rule matches the tool; else whether the call runs, waits or is refused."""
        rule = self.rule(tool_name)
        if rule is None:
            return None
        if not user_id:
            raise BadRequest(f"tool {tool_name} needs approval: user_id is required", error="user_required")
        who = caller_name(caller)
        key = digest(who, user_id, tool_name, inputs)
        found = await self.store.approvals.current(key)
        if found is not None and found.status == "approved":
            return Hold(approved=found)
        if found is not None and found.status == "denied":
            reason = f": {found.reason}" if found.reason else ""
            by = "the app" if found.decided_by == "app" else found.user_id
            return Hold(denied=f"the call of {tool_name} was denied by {by}{reason}")
        if found is None:
            found = await self.store.approvals.create(
                digest=key, user_id=user_id, tool_name=tool_name, caller=who, approver=rule.approver,
                inputs=dict(inputs), ttl=float(rule.ttl),
            )  # fmt: skip
            self._event("approval.requested", found, caller=who)
        return Hold(pending=self._pending(found))

    async def use(self, record: ApprovalRecord) -> bool:
        """Spend ``record`` just before the call runs; False when another identical call spent it."""
        if not await self.store.approvals.use(record.id):
            return False
        self._event("approval.used", record, caller=record.caller)
        return True

    # ---- deciding ----------------------------------------------------------------------------------
    async def decide(
        self,
        approval_id: str,
        decision: Literal["approve", "deny"],
        *,
        by: Literal["user", "app"],
        reason: str | None = None,
    ) -> ApprovalRecord:
        """Take the decision once: 409 ``already_decided`` when decided already or expired."""
        record = await self.store.approvals.get(approval_id)
        if record is None:
            raise NotFound("no such approval", error="not_found")
        if record.approver != by:
            raise Forbidden(
                "this call is approved by its user on the approval page"
                if record.approver == "user"
                else "this call is approved by the app through POST /v1/approvals/{id}",
                error="wrong_approver",
            )
        reason = (reason or "").strip()[:MAX_REASON] or None
        status: Literal["approved", "denied"] = "approved" if decision == "approve" else "denied"
        if not await self.store.approvals.decide(record.id, status, by=by, reason=reason):
            current = await self.store.approvals.get(record.id)
            state = current.state if current is not None else "gone"
            raise Conflict(f"this approval is {state} and can no longer be decided", error="already_decided")
        audited = audit_reason(reason) if status == "denied" else None
        self._event(f"approval.{status}", record, caller=record.caller, decided_by=by, reason=audited)
        self.waiters.notify(record.id)
        if self.notify is not None:
            self.notify(record.id)
        decided: ApprovalRecord | None = await self.store.approvals.get(record.id)
        assert decided is not None
        return decided

    # ---- waiting (GET /v1/auth/status, MCP) ----------------------------------------------------------
    def status_of(self, record: ApprovalRecord) -> AuthStatus:
        state = record.state
        if state == "pending":
            return "pending"
        return "failed" if state == "expired" else "completed"  # decided either way: retry the call

    async def status(self, approval_id: str, wait: float) -> Authorization:
        deadline = now_utc() + timedelta(seconds=wait)
        while True:
            with self.waiters.watch(approval_id) as watch:  # before the read: a decision meanwhile wakes it
                record = await self.store.approvals.get(approval_id)
                if record is None:
                    raise NotFound(f"no authorization {approval_id[:40]!r}", error="not_found")
                status = self.status_of(record)
                remaining = (deadline - now_utc()).total_seconds()
                if status != "pending" or remaining <= 0:
                    return dataclasses.replace(self._pending(record), status=status)
                # woken by a decision here or (PostgreSQL) on another replica; expiry ends the wait too
                until_expiry = (record.expires_at - now_utc()).total_seconds()
                await watch.wait(max(min(remaining, until_expiry), 0.01))

    def item(self, record: ApprovalRecord) -> dict[str, Any]:
        """``GET /v1/approvals`` item."""
        out = {
            "id": record.id,
            "user_id": record.user_id,
            "tool_name": record.tool_name,
            "inputs": record.inputs,
            "status": record.state,
            "approver": record.approver,
            "url": self.url(record.id),
            "created_at": record.created_at.isoformat(),
            "expires_at": record.expires_at.isoformat(),
        }
        if record.decided_at is not None:
            out["decided_at"] = record.decided_at.isoformat()
        if record.reason:
            out["reason"] = record.reason
        return out


def audit_reason(reason: str | None) -> str | None:
    """A denial's reason as the audit keeps it: one line (control characters become spaces), at most
    :data:`MAX_AUDIT_REASON` characters, an ellipsis when shortened; the audit's redactor masks secrets."""
    if not reason:
        return None
    line = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    if len(line) > MAX_AUDIT_REASON:
        line = line[: MAX_AUDIT_REASON - 1] + "…"
    return line or None
