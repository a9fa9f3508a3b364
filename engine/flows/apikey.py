"""The key form of a ``type: api_key`` provider: the flow link shows it, the browser posts the key back.

The link handed out is the same ``/v1/oauth/start/{flow_id}`` as for OAuth (so MCP's URL elicitation
and every client work unchanged). Opening it makes a fresh single-use form token (256 bits; only its
SHA-256 is stored, in the flow's state column): the form's CSRF token. Posting the form consumes it
atomically; the entered values are checked against each field's ``pattern`` and, when the provider has
a ``check``, the key is sent once to that configured endpoint. A refused or malformed key shows the
form again with a new token; an accepted one goes the way of an exchanged code
(:meth:`engine.flows.browser.BrowserLeg.finish`: the user verifier, then the grant, sealed like a
token). The key is never logged, never echoed back into a page, never in an error.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

import aiohttp
import structlog

from engine.clock import now_utc
from engine.flows.browser import BrowserLeg
from engine.flows.deps import FlowDeps
from engine.flows.results import CallbackResult
from engine.oauth.callback import state_hash
from engine.oauth.tokens import TokenSet
from engine.providers.model import Provider
from engine.providers.schema import KeyCheck, KeyField
from engine.store.records import FlowRecord

log = structlog.get_logger("keyturn.flows")

MAX_VALUE = 4096
CHECK_TIMEOUT = 10.0
CheckOutcome = Literal["accepted", "refused", "unavailable"]


@dataclasses.dataclass(frozen=True, repr=False)
class KeyForm:
    """The form to show: its single-use token, the fields, non-secret values to keep, an error."""

    flow_id: str
    token: str
    provider_name: str
    fields: tuple[KeyField, ...]
    values: Mapping[str, str] = dataclasses.field(default_factory=dict)  # never a secret field's
    error: str | None = None

    def __repr__(self) -> str:
        return f"KeyForm(flow_id={self.flow_id!r}, error={self.error!r})"


async def check_key(session: aiohttp.ClientSession, check: KeyCheck, key: str) -> CheckOutcome:
    """Send the key once to the provider's configured check endpoint: 2xx accepted, 401/403 refused."""
    headers = {check.header: f"{check.prefix}{key}"}
    try:
        async with session.request(
            check.method,
            check.endpoint,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT),
        ) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("api_key_check_unavailable", endpoint=check.endpoint, error=type(exc).__name__)
        return "unavailable"
    if 200 <= status < 300:
        return "accepted"
    if status in (401, 403):
        return "refused"
    log.info("api_key_check_unavailable", endpoint=check.endpoint, status=status)
    return "unavailable"


class KeyEntry:
    def __init__(self, deps: FlowDeps, browser: BrowserLeg) -> None:
        self.d = deps
        self.browser = browser

    def _provider(self, flow: FlowRecord) -> Provider | None:
        provider = self.d.providers().get(flow.provider_id)
        return provider if provider is not None and provider.api_key is not None else None

    async def open(self, flow_id: str) -> KeyForm | CallbackResult | None:
        """The form for an api_key flow (None: not one; the OAuth start handles it)."""
        flow = await self.d.store.flows.get(flow_id)
        if flow is None or self._provider(flow) is None:
            return None
        if flow.status != "pending" or flow.expires_at <= now_utc():
            return None  # the OAuth start's pages: already connected, expired
        return await self._form(flow)

    async def _form(
        self, flow: FlowRecord, *, error: str | None = None, values: Mapping[str, str] | None = None
    ) -> KeyForm | CallbackResult:
        provider = self._provider(flow)
        if provider is None or provider.api_key is None:
            return CallbackResult("failed", message="This provider is no longer configured.", flow_id=flow.id)
        token = secrets.token_urlsafe(32)
        ttl = min(float(self.d.config().security.flow_ttl), (flow.expires_at - now_utc()).total_seconds())
        if not await self.d.store.flows.set_state(
            flow.id, state_hash(token), now_utc() + timedelta(seconds=max(ttl, 1))
        ):
            return CallbackResult("expired", message="This link has expired or was already used.")
        return KeyForm(
            flow_id=flow.id,
            token=token,
            provider_name=provider.description or provider.id,
            fields=provider.api_key.fields,
            values=dict(values or {}),
            error=error,
        )

    async def submit(self, flow_id: str, form: Mapping[str, str]) -> KeyForm | CallbackResult:
        """The posted form: the key checked and stored, or the form again saying what was wrong."""
        token = form.get("csrf_token") or ""
        flow = await self.d.store.flows.consume_state(state_hash(token)) if token else None
        if flow is None or flow.id != flow_id:
            return CallbackResult(
                "expired",
                message="This form has expired or was already sent.",
                detail="Open the link from your app again.",
            )
        provider = self._provider(flow)
        if provider is None or provider.api_key is None:
            return await self.browser.end.failed(
                flow, "unknown_provider", "the provider is no longer configured"
            )
        spec = provider.api_key
        values = {f.name: (form.get(f.name) or "").strip() for f in spec.fields}
        kept = {f.name: values[f.name] for f in spec.fields if not f.secret}
        error = _invalid(spec.fields, values)
        key = values[spec.secret_field.name]
        if error is None and spec.check is not None:
            outcome = await check_key(self.d.oauth.session, spec.check, key)
            if outcome == "refused":
                error = f"{provider.description or provider.id} did not accept this key."
            elif outcome == "unavailable":
                error = f"The key could not be checked with {provider.description or provider.id}; try again."
            log.info("api_key_checked", provider=provider.id, flow_id=flow.id, outcome=outcome)
        if error is not None:
            return await self._form(flow, error=error, values=kept)
        tokens = TokenSet(access_token=key, token_type="api_key")
        return await self.browser.finish(flow, provider, tokens, None, kept)


def _invalid(fields: tuple[KeyField, ...], values: Mapping[str, str]) -> str | None:
    """What is wrong with the entered values (naming the field, never quoting a value), or None."""
    for f in fields:
        value = values[f.name]
        label = f.label or f.name
        if not value:
            return f"{label} is required."
        if len(value) > MAX_VALUE or any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"{label} is too long or has characters it cannot have."
        if not f.matches(value):
            return f"{label} does not have the expected form."
    return None
