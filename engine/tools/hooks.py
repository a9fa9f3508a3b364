"""``tools.hooks``: Arcade's hook contract (ArcadeAI/schemas ``logic_extensions/http/1.0``), client side.

Three kinds, each a POST of JSON with ``Authorization: Bearer <token>`` when a token is configured:

- ``access``: ``AccessHookRequest {user_id, toolkits}`` -> ``AccessHookResult {only?, deny?}``; the
  toolkits sent are every tool the hook governs (its ``tools`` globs). With ``only`` just those are
  allowed (``deny`` is then ignored); otherwise ``deny`` hides what it names. A toolkit named without
  ``tools`` means the whole toolkit, a tool without versions every version. Decisions are kept per
  user for the hook's ``cache``; a tool must be allowed by every access hook that governs it.
- ``pre``: ``PreHookRequest {execution_id, tool, inputs, context}`` -> ``PreHookResult {code,
  error_message?, override?: {inputs?, secrets?}}``; ``CHECK_FAILED``/``RATE_LIMIT_EXCEEDED`` refuse the
  call with ``error_message`` (what the agent sees); ``override.inputs`` replaces the inputs it names
  (the caller validates the result against the tool's schema again); ``override.secrets`` adds or
  replaces secrets the worker gets.
- ``post``: ``PostHookRequest {execution_id, tool, inputs, success, output, execution_code?,
  execution_error?, context}`` -> ``PostHookResult {code, error_message?, override?: {output?}}``.

Pre and post hooks run in ``priority`` order (lower first; config order breaks ties), each seeing what
the one before it left. A timeout, a refused connection, a non-200 answer or one outside the contract
follows the hook's ``failure``: ``closed`` (default) refuses, ``open`` carries on as if it said OK.

The ``context`` is the contract's ``ToolContext``: ``user_id``, ``authorization`` (provider id, granted
scopes, user info) and ``secrets`` (names only). A hook never receives a token or a secret value
(SECURITY 39). Every call is counted by hook, kind and outcome with its latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import structlog

from engine.config.model import Config, HookConfig
from engine.events import HookCalled, Publish, discard
from engine.httpbody import BodyTooLarge, read_body
from engine.tools.access import tools_allow
from engine.tools.hook_contract import access_allows, tool_info, toolkits
from engine.tools.registry import Tool

log = structlog.get_logger("keyturn.hooks")

MAX_ANSWER_BYTES = 1024 * 1024
MAX_CACHED_USERS = 10_000
CODES = frozenset({"OK", "CHECK_FAILED", "RATE_LIMIT_EXCEEDED"})


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A call a hook (or a failed hook) refused: the error the agent sees in ``output.error``."""

    message: str
    can_retry: bool = False

    def error(self) -> dict[str, Any]:
        kind = "TOOL_RUNTIME_RETRY" if self.can_retry else "TOOL_RUNTIME_FATAL"
        return {"message": self.message, "kind": kind, "can_retry": self.can_retry}


@dataclasses.dataclass
class PreOutcome:
    inputs: dict[str, Any]
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)  # overrides, by key
    changed: bool = False  # some hook replaced inputs: validate again
    refusal: Refusal | None = None


@dataclasses.dataclass
class PostOutcome:
    output: dict[str, Any]  # value/error/logs as the agent will see them
    success: bool
    refusal: Refusal | None = None


_Decision = tuple[float, frozenset[str], frozenset[str]]


class _Failed(Exception):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome  # timeout | unreachable | http_error | invalid_answer
        self.detail = detail


class Hooks:
    def __init__(
        self,
        config: Callable[[], Config],
        session: aiohttp.ClientSession,
        catalog: Callable[[], Awaitable[list[Tool]]],
        publish: Publish = discard,
    ) -> None:
        self.config = config
        self.session = session
        self.catalog = catalog  # every tool (access hooks are asked about all the tools they govern)
        self.publish = publish  # HookCalled events: metrics by hook, kind and outcome with latency
        # (hook id, user id) -> (expires at, tool keys asked about, allowed tool keys)
        self._access: OrderedDict[tuple[str, str], tuple[float, frozenset[str], frozenset[str]]] = (
            OrderedDict()
        )

    def forget(self) -> None:
        """Drop every cached access decision (a reload changed ``tools.hooks``: the next call asks anew)."""
        self._access.clear()

    def _hooks(self, kind: str, tool_name: str | None = None) -> list[HookConfig]:
        hooks = [h for h in self.config().tools.hooks if h.kind == kind]
        if tool_name is not None:
            hooks = [h for h in hooks if tools_allow(h.tools, tool_name)]
        return sorted(hooks, key=lambda h: h.priority)  # stable: config order breaks ties

    # ---- the HTTP call ---------------------------------------------------------------------------
    async def _call(self, hook: HookConfig, body: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if hook.token:
            headers["Authorization"] = f"Bearer {hook.token}"
        outcome = "invalid_answer"
        try:
            async with asyncio.timeout(float(hook.timeout)):
                async with self.session.post(
                    hook.url, data=json.dumps(body, default=str), headers=headers, allow_redirects=False
                ) as resp:
                    raw = await read_body(resp.content, MAX_ANSWER_BYTES, length=resp.content_length)
                    if resp.status != 200:
                        outcome = "http_error"
                        raise _Failed(outcome, f"answered HTTP {resp.status}")
            try:
                answer = json.loads(raw)
            except ValueError:
                raise _Failed(outcome, "answered something that is not JSON") from None
            if not isinstance(answer, dict):
                raise _Failed(outcome, "answered JSON that is not an object")
            if hook.kind != "access":
                code = answer.get("code")
                if code not in CODES:
                    raise _Failed(outcome, f"answered code {str(code)[:40]!r}, not one of {sorted(CODES)}")
                outcome = {"OK": "ok", "CHECK_FAILED": "check_failed"}.get(code, "rate_limited")
            else:
                outcome = "ok"
            return answer
        except TimeoutError:
            outcome = "timeout"
            raise _Failed(outcome, f"did not answer within {float(hook.timeout):g}s") from None
        except BodyTooLarge:
            raise _Failed(outcome, "answered more than 1 MiB") from None
        except aiohttp.ClientError as exc:
            outcome = "unreachable"
            raise _Failed(outcome, f"could not be reached ({type(exc).__name__})") from None
        finally:
            self.publish(
                HookCalled(hook=hook.id, kind=hook.kind, outcome=outcome, seconds=time.monotonic() - started)
            )
            if outcome not in ("ok", "check_failed", "rate_limited"):
                log.warning("hook_failed", hook=hook.id, kind=hook.kind, outcome=outcome)

    @staticmethod
    def _failure(hook: HookConfig, exc: _Failed) -> Refusal | None:
        if hook.failure == "open":
            return None
        return Refusal(f"the call was refused: hook {hook.id} {exc.detail}", can_retry=True)

    # ---- pre -------------------------------------------------------------------------------------
    async def pre(
        self, tool: Tool, inputs: Mapping[str, Any], context: dict[str, Any], execution_id: str
    ) -> PreOutcome:
        outcome = PreOutcome(inputs=dict(inputs))
        for hook in self._hooks("pre", tool.name):
            body = {
                "execution_id": execution_id,
                "tool": tool_info(tool),
                "inputs": outcome.inputs,
                "context": context,
            }
            try:
                answer = await self._call(hook, body)
                override = answer.get("override") or {}
                if not isinstance(override, dict):
                    raise _Failed("invalid_answer", "answered an override that is not an object")
                new_inputs = override.get("inputs")
                new_secrets = _secrets(override.get("secrets"))
                if new_inputs is not None and not isinstance(new_inputs, dict):
                    raise _Failed("invalid_answer", "answered override.inputs that is not an object")
            except _Failed as exc:
                refusal = self._failure(hook, exc)
                if refusal is not None:
                    outcome.refusal = refusal
                    return outcome
                continue
            code = answer["code"]
            if code != "OK":
                message = str(answer.get("error_message") or f"the call was refused by hook {hook.id}")
                outcome.refusal = Refusal(message[:2000], can_retry=code == "RATE_LIMIT_EXCEEDED")
                return outcome
            if new_inputs:
                outcome.inputs = {**outcome.inputs, **new_inputs}
                outcome.changed = True
            outcome.secrets.update(new_secrets)
        return outcome

    # ---- post ------------------------------------------------------------------------------------
    async def post(
        self,
        tool: Tool,
        inputs: Mapping[str, Any],
        output: dict[str, Any],
        success: bool,
        context: dict[str, Any],
        execution_id: str,
    ) -> PostOutcome:
        outcome = PostOutcome(output=dict(output), success=success)
        for hook in self._hooks("post", tool.name):
            body: dict[str, Any] = {
                "execution_id": execution_id,
                "tool": tool_info(tool),
                "inputs": dict(inputs),
                "success": outcome.success,
                "output": outcome.output.get("value"),
                "context": context,
            }
            error = outcome.output.get("error")
            if isinstance(error, dict):
                body["execution_code"] = str(error.get("kind") or "")
                body["execution_error"] = str(error.get("message") or "")
            try:
                answer = await self._call(hook, body)
                override = answer.get("override") or {}
                if not isinstance(override, dict):
                    raise _Failed("invalid_answer", "answered an override that is not an object")
            except _Failed as exc:
                refusal = self._failure(hook, exc)
                if refusal is not None:
                    return PostOutcome(output={"error": refusal.error()}, success=False, refusal=refusal)
                continue
            code = answer["code"]
            if code != "OK":
                message = str(answer.get("error_message") or f"the output was withheld by hook {hook.id}")
                refusal = Refusal(message[:2000], can_retry=code == "RATE_LIMIT_EXCEEDED")
                return PostOutcome(output={"error": refusal.error()}, success=False, refusal=refusal)
            if "output" in override:
                outcome.output["value"] = override["output"]
        return outcome

    # ---- access ----------------------------------------------------------------------------------
    async def allowed(self, user_id: str | None, tools: list[Tool]) -> list[Tool]:
        """``tools`` less those an access hook hides from ``user_id`` (all governed ones without a user)."""
        hidden: set[str] = set()
        for hook in self._hooks("access"):
            governed = [t for t in tools if tools_allow(hook.tools, t.name) and _key(t) not in hidden]
            if not governed:
                continue
            if not user_id:
                hidden.update(_key(t) for t in governed)
                continue
            allowed = await self._decision(hook, user_id)
            if allowed is None:  # the hook failed and fails open
                continue
            hidden.update(_key(t) for t in governed if _key(t) not in allowed)
        return [t for t in tools if _key(t) not in hidden]

    async def _decision(self, hook: HookConfig, user_id: str) -> frozenset[str] | None:
        """The tool keys ``hook`` allows ``user_id`` (cached); None when it failed open."""
        governed = [t for t in await self.catalog() if tools_allow(hook.tools, t.name)]
        keys = frozenset(_key(t) for t in governed)
        cached = self._access.get((hook.id, user_id))
        now = time.monotonic()
        if cached is not None and cached[0] > now and keys <= cached[1]:
            self._access.move_to_end((hook.id, user_id))
            return cached[2]
        body = {"user_id": user_id, "toolkits": toolkits(governed)}
        try:
            answer = await self._call(hook, body)
            allowed = frozenset(_key(t) for t in governed if access_allows(answer, t))
        except (_Failed, ValueError) as exc:
            failed = exc if isinstance(exc, _Failed) else _Failed("invalid_answer", str(exc))
            return None if self._failure(hook, failed) is None else frozenset()
        self._access[(hook.id, user_id)] = (now + float(hook.cache or 30), keys, allowed)
        self._access.move_to_end((hook.id, user_id))
        while len(self._access) > MAX_CACHED_USERS:
            self._access.popitem(last=False)
        return allowed


def _key(tool: Tool) -> str:
    return tool.name.lower()


def _secrets(value: Any) -> dict[str, str]:
    """``override.secrets``: a list of string maps, each ``{key, value}`` or ``{NAME: value, ...}``."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise _Failed("invalid_answer", "answered override.secrets that is not a list")
    out: dict[str, str] = {}
    for item in value:
        if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
            raise _Failed("invalid_answer", "answered an override.secrets item that is not a string map")
        if set(item) == {"key", "value"}:
            out[item["key"]] = item["value"]
        else:
            out.update({str(k): v for k, v in item.items()})
    return out
