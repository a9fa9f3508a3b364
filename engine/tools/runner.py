"""The execute path, shared by ``/v1/tools/execute`` and MCP ``tools/call``.

Validate the input against the tool's schema; when the tool needs authorization, find the user's
usable grant (refreshed on demand) or answer with the pending authorization; add the configured
secrets; call the worker; on an upstream auth error refresh once and retry; audit and count.
Answers are records (:class:`Execution`, :class:`engine.flows.results.Authorization`); the API edge
makes Arcade's JSON of them (:mod:`engine.api.shapes`).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import jsonschema

from engine.clock import now_utc
from engine.config.model import Config
from engine.errors import BadRequest, KeyturnError, ProviderError, Unavailable, ValidationFailed
from engine.events import GrantEvent, Publish, ToolEvent, ToolResult, discard
from engine.flows.results import Authorization
from engine.flows.service import FlowService
from engine.lifecycle.refresh import Refresher
from engine.providers.resolve import requirement_scopes
from engine.store.records import GrantRecord
from engine.store.store import Store
from engine.tools.access import caller_allows
from engine.tools.approvals import Approvals, Hold
from engine.tools.formats import input_json_schema
from engine.tools.hook_contract import hook_context
from engine.tools.hooks import Hooks, Refusal
from engine.tools.registry import Tool, ToolRegistry, unknown_tool


@dataclasses.dataclass(frozen=True)
class Execution:
    """One execute's result: the worker's ``output`` (value/error/logs), or the authorization it waits for."""

    id: str
    success: bool
    output: dict[str, Any]
    duration_ms: float
    finished_at: datetime
    authorization: Authorization | None = None


@dataclasses.dataclass
class ToolRunner:
    registry: ToolRegistry
    flows: FlowService
    refresher: Refresher
    config: Callable[[], Config]
    store: Store  # the user's grants (statuses, marking needs_reauth)
    publish: Publish = discard  # the event stream (engine.events): tool events, needs_reauth
    hooks: Hooks | None = None  # tools.hooks (access, pre, post)
    approvals: Approvals | None = None  # tools.approval

    async def tool(self, name: str, caller: object = None, user_id: str | None = None) -> Tool:
        """The tool named, if ``caller`` may see it and no access hook hides it from ``user_id``;
        else exactly the unknown tool's 404."""
        tool = await self.registry.get(name)
        if not caller_allows(caller, tool.name):
            raise unknown_tool(name)
        if self.hooks is not None and not await self.hooks.allowed(user_id, [tool]):
            raise unknown_tool(name)
        return tool

    async def tools(
        self, toolkit: str | None = None, caller: object = None, user_id: str | None = None
    ) -> list[Tool]:
        """The catalog (of one toolkit), as far as ``caller`` and the access hooks let ``user_id`` see it."""
        tools = [t for t in await self.registry.all(toolkit) if caller_allows(caller, t.name)]
        if self.hooks is not None:
            tools = await self.hooks.allowed(user_id, tools)
        return tools

    async def authorize(
        self,
        name: str,
        user_id: str,
        next_uri: str | None = None,
        caller: object = None,
        account: str | None = None,
    ) -> Authorization:
        """``/v1/tools/authorize``: the user's authorization for the tool (completed if already granted);
        ``account`` names one of the user's accounts at the provider (None: the default one)."""
        tool = await self.tool(name, caller, user_id)
        requirement = tool.auth
        if requirement is None:
            return Authorization(id=None, status="completed", provider_id=None, user_id=user_id, scopes=())
        return await self.flows.authorize(
            user_id=user_id,
            requirement=requirement,
            scopes=requirement_scopes(requirement),
            next_uri=next_uri,
            account=account,
        )

    async def auth_statuses(self, tools: list[Tool], user_id: str) -> dict[str, dict[str, Any]]:
        """For ``GET /v1/tools?user_id=``: each auth-requiring tool's status for that user, by tool name.

        ``status`` active|inactive (is the provider configured), ``token_status``
        not_started (no grant, or one missing the tool's scopes) | completed | failed (needs_reauth/revoked).
        """
        grants: dict[str, Any] = {}
        out: dict[str, dict[str, Any]] = {}
        for tool in tools:
            requirement = tool.auth
            if requirement is None:
                continue
            try:
                provider = self.flows.find_provider(requirement)
                wanted = requirement_scopes(requirement) if provider.api_key is None else ()
            except KeyturnError as exc:
                out[tool.name] = {
                    "status": "inactive",
                    "status_reason": exc.msg,
                    "token_status": "not_started",
                }
                continue
            if provider.id not in grants:
                grants[provider.id] = await self.store.grants.find(user_id, provider.id)
            grant = grants[provider.id]
            if grant is None:
                token_status = "not_started"
            elif grant.status != "active":
                token_status = "failed"
            else:
                covered = set(wanted) <= set(grant.scopes)
                token_status = "completed" if covered else "not_started"
            out[tool.name] = {"status": "active", "token_status": token_status}
        return out

    async def execute(
        self,
        name: str,
        inputs: Mapping[str, Any],
        user_id: str | None,
        caller: object = None,
        account: str | None = None,
    ) -> Execution:
        """Run the tool as ``user_id`` with the token of ``account`` (None: the user's default account)."""
        started = time.monotonic()
        tool = await self.tool(name, caller, user_id)
        validate_input(tool, inputs)
        inputs = drop_null_optionals(tool, inputs)
        execution_id = f"ex_{secrets.token_urlsafe(12)}"
        held = (
            None if self.approvals is None else await self.approvals.hold(tool.name, inputs, user_id, caller)
        )
        if held is not None and held.approved is None:
            return self._held(tool, held, user_id, started, execution_id)
        agent_inputs = inputs  # what the approval (if any) was given for
        context: dict[str, Any] = {"user_id": user_id}
        grant = None
        provider_id: str | None = None
        requirement = tool.auth
        if requirement is not None:
            if not user_id:
                raise BadRequest(
                    f"tool {tool.name} needs authorization: user_id is required", error="user_required"
                )
            provider = self.flows.find_provider(requirement)
            scopes = requirement_scopes(requirement) if provider.api_key is None else ()  # a key: no scopes
            provider_id = provider.id
            grant = await self.refresher.usable_grant(user_id, provider.id, account)
            if grant is None or not set(scopes) <= set(grant.scopes):
                pending = await self.flows.authorize(
                    user_id=user_id, requirement=requirement, scopes=scopes, next_uri=None, account=account
                )
                if pending.status != "completed":
                    self._done(tool, "authorization_required", user_id, started)
                    return _result(execution_id, started, success=False, authorization=pending)
                grant = await self.refresher.usable_grant(user_id, provider.id, account)
                if grant is None:
                    raise Unavailable("the user's authorization is not usable yet; try again", retry_after=1)
            context["authorization"] = {"token": grant.access_token, "user_info": dict(grant.user_info or {})}
        needed = [s["key"] for s in (tool.definition.get("requirements") or {}).get("secrets") or []]
        hook_ctx = hook_context(user_id, provider_id, grant, needed)  # what hooks see: never a token
        given: dict[str, str] = {}  # secrets pre hooks set
        if self.hooks is not None:
            pre = await self.hooks.pre(tool, inputs, hook_ctx, execution_id)
            refusal = pre.refusal
            if refusal is None and pre.changed:
                try:
                    validate_input(tool, pre.inputs)
                except ValidationFailed as exc:
                    refusal = Refusal(f"a pre hook rewrote the inputs into ones the tool refuses: {exc.msg}")
            if refusal is not None:
                self._done(tool, "refused", user_id, started)
                return _result(execution_id, started, success=False, output={"error": refusal.error()})
            inputs, given = drop_null_optionals(tool, pre.inputs), pre.secrets
        if needed or given:
            available = {**self.config().tools.secrets, **given}
            missing = [k for k in needed if k not in available]
            if missing:
                error = {
                    "kind": "TOOL_REQUIREMENTS_NOT_MET",
                    "can_retry": False,
                    "message": f"tool {tool.name} needs secrets that tools.secrets does not set: "
                    + ", ".join(missing),
                }
                self._done(tool, "failed", user_id, started)
                return _result(execution_id, started, success=False, output={"error": error})
            context["secrets"] = [{"key": k, "value": available[k]} for k in dict.fromkeys([*needed, *given])]
        request = {
            "execution_id": execution_id,
            "created_at": now_utc().isoformat(),
            "tool": {
                "name": tool.definition["name"],
                "toolkit": tool.definition["toolkit"]["name"],
                "version": tool.definition["toolkit"].get("version"),
            },
            "inputs": dict(inputs),
            "context": context,
        }
        approvals, approved = self.approvals, held.approved if held is not None else None
        if approvals is not None and approved is not None and not await approvals.use(approved):
            # an identical call spent the approval first: this one waits for a new decision
            again = await approvals.hold(tool.name, agent_inputs, user_id, caller)
            return self._held(tool, again or Hold(), user_id, started, execution_id)
        answer = await self._invoke(tool, request)
        if grant is not None and _upstream_auth_error(answer):
            # the token was refused upstream (revoked or expired early): refresh once and retry
            result = await self.refresher.refresh(grant.id, force=True)
            fresh = result.grant if result.outcome == "refreshed" else None
            if fresh is not None:
                context["authorization"] = {
                    "token": fresh.access_token,
                    "user_info": dict(fresh.user_info or {}),
                }
                answer = await self._invoke(tool, request)
            if fresh is None or _upstream_auth_error(answer):
                # refused again (or no new token): the user must authorize anew
                context.pop("authorization", None)
                return await self._reauthorize(tool, grant, user_id, started, execution_id)
        success = bool(answer.get("success"))
        output = answer.get("output") or {}
        clean: dict[str, Any] = {}
        for key in ("value", "error", "logs"):
            if output.get(key) is not None:
                clean[key] = output[key]
        if isinstance(clean.get("error"), dict):
            clean["error"].pop("stacktrace", None)
        outcome: ToolResult = "success" if success else "failed"
        if self.hooks is not None:
            post = await self.hooks.post(tool, inputs, clean, success, hook_ctx, execution_id)
            clean, success = post.output, post.success
            outcome = "refused" if post.refusal is not None else outcome
        self._done(tool, outcome, user_id, started)
        return _result(execution_id, started, success=success, output=clean)

    async def _invoke(self, tool: Tool, request: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer; a worker that cannot be reached or refuses us becomes a tool error."""
        retry_ms: int | None
        try:
            return await tool.worker.invoke(request)
        except Unavailable as exc:
            retry_ms = int((exc.retry_after or 1) * 1000)
            error = _error(exc.msg, "NETWORK_TRANSPORT_RUNTIME_UNREACHABLE", True, retry_ms)
        except ProviderError as exc:
            retry_ms = int((exc.retry_after or 1) * 1000) if exc.retryable else None
            kind = "TOOL_RUNTIME_FATAL" if exc.kind == "worker_auth" else "NETWORK_TRANSPORT_RUNTIME_UNMAPPED"
            error = _error(exc.msg, kind, exc.retryable, retry_ms)
        return {"success": False, "output": {"error": error}}

    async def _reauthorize(
        self, tool: Tool, grant: GrantRecord, user_id: str | None, started: float, execution_id: str
    ) -> Execution:
        requirement = tool.auth or {}
        store = self.store
        current = await store.grants.get(grant.id)
        if current is not None and current.status == "active":  # a failed refresh may have marked it already
            await store.grants.set_status(grant.id, "needs_reauth", last_error="upstream_auth_error")
            self.publish(
                GrantEvent(
                    name="grant.needs_reauth",
                    outcome="failure",
                    user_id=user_id,
                    provider=grant.provider_id,
                    reason="upstream_auth_error",
                )
            )
        pending = await self.flows.authorize(
            user_id=str(user_id),
            requirement=requirement,
            scopes=requirement_scopes(requirement),
            next_uri=None,
            account=grant.account,
        )
        self._done(tool, "authorization_required", user_id, started)
        return _result(execution_id, started, success=False, authorization=pending)

    def _held(
        self, tool: Tool, held: Hold, user_id: str | None, started: float, execution_id: str
    ) -> Execution:
        """A call waiting for approval (answered like an authorization) or denied (the reason)."""
        if held.pending is not None:
            self._done(tool, "approval_required", user_id, started)
            return _result(execution_id, started, success=False, authorization=held.pending)
        message = held.denied or f"the call of {tool.name} was not approved"
        self._done(tool, "refused", user_id, started)
        error = {"message": message, "kind": "TOOL_RUNTIME_FATAL", "can_retry": False}
        return _result(execution_id, started, success=False, output={"error": error})

    def _done(self, tool: Tool, result: ToolResult, user_id: str | None, started: float) -> None:
        self.publish(
            ToolEvent(
                tool=tool.name,
                result=result,
                user_id=user_id,
                duration=round(time.monotonic() - started, 4),
                worker=tool.worker.worker_id,
            )
        )


def _error(message: str, kind: str, can_retry: bool, retry_after_ms: int | None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "kind": kind, "can_retry": can_retry}
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
    return error


def drop_null_optionals(tool: Tool, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out optional parameters given as null: OpenAI's strict mode sends null for an omitted one."""
    params = (tool.definition.get("input") or {}).get("parameters") or []
    optional = {p.get("name") for p in params if not p.get("required")}
    return {k: v for k, v in inputs.items() if not (v is None and k in optional)}


def _upstream_auth_error(answer: Mapping[str, Any]) -> bool:
    error = (answer.get("output") or {}).get("error") or {}
    return isinstance(error, Mapping) and (
        error.get("kind") == "UPSTREAM_RUNTIME_AUTH_ERROR" or error.get("status_code") == 401
    )


_VALIDATORS: dict[str, tuple[dict[str, Any], dict[str, Any], jsonschema.Draft202012Validator]] = {}


def validate_input(tool: Tool, inputs: Mapping[str, Any]) -> None:
    """Check ``inputs`` against the tool's parameters; the error names the parameter."""
    cached = _VALIDATORS.get(tool.name)
    if cached is not None and cached[0] is tool.definition:  # same definition object: same schema
        schema, validator = cached[1], cached[2]
    else:
        schema = input_json_schema(tool.definition)
        validator = jsonschema.Draft202012Validator(schema)
        _VALIDATORS[tool.name] = (tool.definition, schema, validator)
    errors = sorted(validator.iter_errors(dict(inputs)), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.path) or "input"
        if first.validator == "additionalProperties":
            known = ", ".join(sorted(schema["properties"])) or "none"
            raise ValidationFailed(f"{tool.name}: {first.message} (parameters: {known})")
        raise ValidationFailed(f"{tool.name}: input.{where}: {first.message}"[:500])


def _result(
    execution_id: str,
    started: float,
    *,
    success: bool,
    output: dict[str, Any] | None = None,
    authorization: Authorization | None = None,
) -> Execution:
    return Execution(
        id=execution_id,
        success=success,
        output=output or {},
        duration_ms=round((time.monotonic() - started) * 1000, 3),
        finished_at=now_utc(),
        authorization=authorization,
    )
