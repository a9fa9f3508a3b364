"""One typed event stream: what happened in the engine, published once, read by every subscriber.

Components publish an :data:`Event` to the app's :class:`EventBus`; the auditor
(``Auditor.on_event``, :mod:`engine.audit.pipeline`), the metrics (:mod:`engine.metrics.events`) and
the flow status cache (``FlowService.on_event``) subscribe. An event is a frozen dataclass of one
kind; its ``name`` is a ``Literal`` of that kind's names, so a subscriber matches on the type and on
names mypy knows (a misspelt name does not type check, and ``assert_never`` makes a subscriber say
what it does with every name of a kind).

    FlowEvent       flow.started flow.completed flow.failed user.verified user.mismatch
                    reauth.reconnect_sub_changed
    GrantEvent      grant.refreshed grant.refresh_failed grant.needs_reauth grant.revoked
                    grant.revoke_failed grant.unreadable token.exposed
    ReapEvent       flow.reaped grant.reaped
    ToolEvent       tool.executed tool.denied (from its ``result``)
    LoginEvent      login.succeeded login.failed session.revoked connection.disconnected
    ApprovalEvent   approval.requested approval.approved approval.denied approval.used
    AccessEvent     api_key.denied rate_limited
    OpsEvent        config.loaded config.reloaded config.reload_rejected key.rotated audit.exported
    McpAuthEvent    mcp_oauth.client_registered mcp_oauth.consent_given mcp_oauth.consent_denied
                    mcp_oauth.token_issued mcp_oauth.token_refused mcp_oauth.reuse_detected
                    mcp_oauth.token_revoked (Keyturn's authorization server for MCP clients)
    RefreshObserved refresh.observed (metrics only: one refresh attempt's result and duration)
    WorkerChecked   worker.checked (metrics only: a worker answered its health check or not)
    HookCalled      hook.called (metrics only: one tools.hooks call's outcome and duration)

Events carry the user id in clear (``user_id``); the audit pipeline turns it into ``user_ref``.
They never carry a token, code, verifier, secret or API key.

This module imports nothing from the engine: every layer may publish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import structlog

log = structlog.get_logger("keyturn.events")

Outcome = Literal["success", "failure", "denied", "error"]

FlowName = Literal[
    "flow.started",
    "flow.completed",
    "flow.failed",
    "user.verified",
    "user.mismatch",
    "reauth.reconnect_sub_changed",
]
GrantName = Literal[
    "grant.refreshed",
    "grant.refresh_failed",
    "grant.needs_reauth",
    "grant.revoked",
    "grant.revoke_failed",
    "grant.unreadable",
    "token.exposed",
]
ReapName = Literal["flow.reaped", "grant.reaped"]
ToolName = Literal["tool.executed", "tool.denied"]
LoginName = Literal["login.succeeded", "login.failed", "session.revoked", "connection.disconnected"]
AccessName = Literal["api_key.denied", "rate_limited"]
ApprovalName = Literal["approval.requested", "approval.approved", "approval.denied", "approval.used"]
OpsName = Literal[
    "config.loaded", "config.reloaded", "config.reload_rejected", "key.rotated", "audit.exported"
]
McpAuthName = Literal[
    "mcp_oauth.client_registered",
    "mcp_oauth.consent_given",
    "mcp_oauth.consent_denied",
    "mcp_oauth.token_issued",
    "mcp_oauth.token_refused",
    "mcp_oauth.reuse_detected",
    "mcp_oauth.token_revoked",
]
AuditName = Literal[
    FlowName, GrantName, ReapName, ToolName, LoginName, AccessName, OpsName, ApprovalName, McpAuthName
]
EventName = Literal[AuditName, "refresh.observed", "worker.checked", "hook.called"]

AUDIT_NAMES: frozenset[str] = frozenset(get_args(AuditName))
EVENT_NAMES: frozenset[str] = frozenset(get_args(EventName))

# refused: a hook refused the call or withheld its output, or a person denied it (audited as tool.denied);
# approval_required: held for a decision (tools.approval; tool.denied too)
ToolResult = Literal["success", "failed", "authorization_required", "refused", "approval_required"]
_HELD = ("authorization_required", "refused", "approval_required")
RefreshResult = Literal["refreshed", "lost_race", "needs_reauth", "retry", "overdue"]


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowEvent:
    """Something happened to an authorization flow (or to the person finishing it)."""

    name: FlowName
    outcome: Outcome
    user_id: str
    provider: str
    flow_id: str | None = None
    reason: str | None = None

    def fields(self) -> dict[str, Any]:
        return _present(
            user_id=self.user_id, provider=self.provider, flow_id=self.flow_id, reason=self.reason
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrantEvent:
    """Something happened to a user's grant (its tokens, its status, its exposure)."""

    name: GrantName
    outcome: Outcome
    user_id: str | None
    provider: str
    reason: str | None = None
    failures: int | None = None  # grant.refresh_failed: attempts failed in a row
    retry_in: float | None = None  # grant.refresh_failed: seconds to the next attempt
    overdue: bool | None = None  # grant.refresh_failed: failing for longer than failure_report_after
    revoked_at_provider: bool | None = None  # grant.revoked

    def fields(self) -> dict[str, Any]:
        return _present(
            user_id=self.user_id,
            provider=self.provider,
            reason=self.reason,
            failures=self.failures,
            retry_in=self.retry_in,
            overdue=self.overdue,
            revoked_at_provider=self.revoked_at_provider,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReapEvent:
    """Retention deleted ``count`` expired flows or long-dead grants."""

    name: ReapName
    count: int
    outcome: Outcome = "success"

    def fields(self) -> dict[str, Any]:
        return {"count": self.count}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolEvent:
    """A tool call ended: ``result`` success | failed | authorization_required | refused (those two:
    ``tool.denied``)."""

    tool: str
    result: ToolResult
    user_id: str | None
    duration: float
    worker: str

    @property
    def name(self) -> ToolName:
        return "tool.denied" if self.result in _HELD else "tool.executed"

    @property
    def outcome(self) -> Outcome:
        if self.result in _HELD:
            return "denied"
        return "success" if self.result == "success" else "failure"

    def fields(self) -> dict[str, Any]:
        return _present(tool=self.tool, user_id=self.user_id, duration=self.duration, worker=self.worker)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginEvent:
    """A person signed in (or was refused), a session ended, a person disconnected a grant."""

    name: LoginName
    outcome: Outcome
    source_ip: str | None = None
    user_id: str | None = None
    provider: str | None = None
    reason: str | None = None
    session_id: str | None = None  # the session's record id, never its cookie value
    result: str | None = None  # connection.disconnected: the revocation's outcome
    count: int | None = None  # session.revoked from the CLI: how many

    def fields(self) -> dict[str, Any]:
        return _present(
            source_ip=self.source_ip,
            user_id=self.user_id,
            provider=self.provider,
            reason=self.reason,
            session_id=self.session_id,
            result=self.result,
            count=self.count,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessEvent:
    """A caller was refused at the edge: a missing or wrong API key, or a rate limit."""

    name: AccessName
    reason: str | None = None
    source_ip: str | None = None
    user_id: str | None = None
    provider: str | None = None
    outcome: Outcome = "denied"

    def fields(self) -> dict[str, Any]:
        return _present(
            user_id=self.user_id, provider=self.provider, reason=self.reason, source_ip=self.source_ip
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpsEvent:
    """An operator-level happening: a config loaded or reloaded, keys rotated, records exported."""

    name: OpsName
    outcome: Outcome = "success"
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return _present(**self.details)


@dataclasses.dataclass(frozen=True, kw_only=True)
class McpAuthEvent:
    """Keyturn's authorization server for MCP clients registered a client, recorded a consent, issued,
    refused or revoked a token, or saw a code or refresh token used twice (and revoked its family).

    ``client_id`` is the client's public identifier; ``reason`` the OAuth error code of a refusal, or
    ``code`` / ``refresh_token`` for ``mcp_oauth.reuse_detected``; ``family_id`` the record id of the
    token family revoked. Never a token, code, verifier or client secret.
    """

    name: McpAuthName
    outcome: Outcome
    client_id: str | None = None
    user_id: str | None = None
    grant_type: str | None = None
    resource: str | None = None
    reason: str | None = None
    family_id: str | None = None
    remembered: bool | None = (
        None  # consent_given: remembered for this client (or given from a remembered one)
    )

    def fields(self) -> dict[str, Any]:
        return _present(
            client_id=self.client_id,
            user_id=self.user_id,
            grant_type=self.grant_type,
            resource=self.resource,
            reason=self.reason,
            family_id=self.family_id,
            remembered=self.remembered,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefreshObserved:
    """One refresh attempt of a ``provider``'s grant ended with ``result`` after ``seconds``."""

    provider: str
    result: RefreshResult
    seconds: float
    name: Literal["refresh.observed"] = "refresh.observed"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerChecked:
    """A worker answered its tool listing (``up``) or did not."""

    worker: str
    up: bool
    name: Literal["worker.checked"] = "worker.checked"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApprovalEvent:
    """A tool call was held for a decision, decided (by ``decided_by``: ``user`` or ``app``), or ran."""

    name: ApprovalName
    user_id: str
    tool: str
    approval_id: str
    caller: str | None = None  # the API key's name
    decided_by: str | None = None  # user | app
    reason: str | None = None  # a denial's reason, shortened to one line (the audit redacts it)
    outcome: Outcome = "success"

    def fields(self) -> dict[str, Any]:
        return _present(
            user_id=self.user_id,
            tool=self.tool,
            approval_id=self.approval_id,
            caller=self.caller,
            decided_by=self.decided_by,
            reason=self.reason,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookCalled:
    """One call of the ``tools.hooks`` entry ``hook`` (``kind`` access|pre|post) ended with ``outcome``
    (ok, check_failed, rate_limited, timeout, unreachable, http_error, invalid_answer)."""

    hook: str
    kind: str
    outcome: str
    seconds: float
    name: Literal["hook.called"] = "hook.called"


AuditedEvent = (
    FlowEvent
    | GrantEvent
    | ReapEvent
    | ToolEvent
    | LoginEvent
    | AccessEvent
    | OpsEvent
    | ApprovalEvent
    | McpAuthEvent
)
Event = AuditedEvent | RefreshObserved | WorkerChecked | HookCalled

Subscriber = Callable[[Event], object]
Publish = Callable[[Event], None]


def discard(event: Event) -> None:
    """A ``Publish`` that drops every event (a component used without a bus)."""


class EventBus:
    """Hands each published event to every subscriber, in the order they subscribed.

    Every subscriber sees the event even when an earlier one raised; the first exception is raised
    afterwards to the publisher. That is how ``audit.required`` works: the auditor raises when no sink
    accepted the record, and the action that published it fails.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns the function that removes it again."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        failure: BaseException | None = None
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception as exc:
                if failure is None:
                    failure = exc
                else:
                    log.error("event_subscriber_failed", event_name=event.name, error=type(exc).__name__)
        if failure is not None:
            raise failure
