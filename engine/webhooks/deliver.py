"""The deliverer: a background job that sends outbox events to the ``webhooks[]`` endpoints.

One replica delivers at a time: each pass takes (or keeps) the database lease ``webhooks`` for
``lifecycle.lease_ttl``, renewed while a batch is in flight. A pass fans new events out into one
delivery per endpoint that wants the type, then sends the deliveries that are due, at most
``CONCURRENCY`` at once, each bounded by the endpoint's ``timeout``. A 2xx answer is delivered; any
other answer, a timeout or a refused connection is retried after ``retry.initial`` doubling up to
``retry.max`` (with jitter), until ``retry.give_up_after`` has passed since the delivery was queued:
then it is kept as ``failed`` (``keyturn webhooks list --status failed``, ``replay``).

Nothing a request or a refresh does waits for this: they only write the event in their own
transaction, and wake this job (:meth:`Deliverer.wake`). A crash between the write and the delivery
loses nothing: the next pass, in this process after a restart or in another replica, finds it.
The configuration is read per pass, so a reload applies new endpoints, secrets and retries at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

import aiohttp
import structlog

from engine.clock import now_utc
from engine.config.model import Config, WebhookConfig
from engine.config.webhooks import secret_bytes
from engine.store.outbox import DELIVERED, FAILED, PENDING, Delivery
from engine.store.store import Store
from engine.webhooks import signing
from engine.webhooks.metrics import WebhookMetrics

log = structlog.get_logger("keyturn.webhooks")

LEASE = "webhooks"
POLL = 2.0  # seconds between passes when nothing wakes the job (events written by another replica)
BATCH = 100
CONCURRENCY = 8
MAX_ANSWER = 64 * 1024  # bytes of a receiver's answer read (and discarded)
RETENTION_EVERY = 3600.0


def backoff(attempts: int, initial: float, cap: float) -> float:
    """``initial`` doubling per failed attempt up to ``cap``, with jitter (between half and all of it)."""
    delay = min(cap, initial * (2 ** max(0, attempts - 1)))
    return random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not a secret


class Deliverer:
    """Started and stopped by the app's webhooks context; ``session`` is its own outgoing HTTP session."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        session: aiohttp.ClientSession,
        *,
        metrics: WebhookMetrics | None = None,
        poll: float = POLL,
    ) -> None:
        self.store = store
        self.config = config
        self.session = session
        self.metrics = metrics or WebhookMetrics(None)
        self.poll = poll
        self.owner = f"kt-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_retention: float | None = None

    def wake(self) -> None:
        """An event was committed here: run a pass now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop delivering; an attempt cut short stays pending and is sent again (at least once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.store.leases.release(LEASE, self.owner)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next pass tries again; the reason is logged
                log.error("webhook_pass_failed", error=type(exc).__name__, detail=str(exc)[:200])
                delay = self.poll
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def run_once(self) -> float:
        """One pass (when this replica holds the lease); returns the seconds until the next one."""
        config = self.config()
        ttl = float(config.lifecycle.lease_ttl)
        if not await self.store.leases.acquire(LEASE, self.owner, ttl):
            return self.poll
        endpoints = {h.id: h for h in config.webhooks if h.enabled}

        def routes(event_type: str) -> Sequence[str]:
            return [h.id for h in endpoints.values() if event_type in h.events]

        await self.store.outbox.fan_out(routes)
        due = await self.store.outbox.due(now_utc(), limit=BATCH)
        if due:
            await self._deliver_all(due, endpoints, ttl)
        await self._retention(config)
        if len(due) == BATCH or await self.store.outbox.has_undispatched():
            return 0.0
        next_due = await self.store.outbox.next_due()
        if next_due is None:
            return self.poll
        return min(self.poll, max(0.0, (next_due - now_utc()).total_seconds()))

    async def _deliver_all(
        self, due: list[Delivery], endpoints: dict[str, WebhookConfig], ttl: float
    ) -> None:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(delivery: Delivery) -> None:
            async with semaphore:
                try:
                    await self.deliver(delivery, endpoints.get(delivery.endpoint_id))
                except Exception as exc:  # one bad delivery must not stop the others
                    log.error("webhook_delivery_error", delivery_id=delivery.id, error=type(exc).__name__)

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(max(ttl / 3, 0.5))
                with contextlib.suppress(Exception):
                    await self.store.leases.renew(LEASE, self.owner, ttl)

        keeper = asyncio.create_task(keep_lease())
        try:
            await asyncio.gather(*(one(d) for d in due))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def deliver(self, delivery: Delivery, hook: WebhookConfig | None) -> str:
        """One attempt; returns the delivery's status after it (delivered | pending | failed)."""
        outbox = self.store.outbox
        if hook is None or not hook.secret:  # the endpoint was removed (or disabled) meanwhile
            await outbox.record_attempt(delivery.id, status=FAILED, error="endpoint_not_configured")
            self.metrics.attempt(delivery.endpoint_id, "failed")
            return FAILED
        payload = signing.body(delivery.event_id, delivery.type, delivery.event_created_at, delivery.data)
        headers = signing.headers(secret_bytes(hook.secret), delivery.event_id, int(time.time()), payload)
        started = time.monotonic()
        error: str | None = None
        try:
            async with self.session.post(
                hook.url,
                data=payload.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=float(hook.timeout)),
                allow_redirects=False,
            ) as resp:
                await resp.content.read(MAX_ANSWER)
                if not 200 <= resp.status < 300:
                    error = f"http_{resp.status}"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = "connection_error" if isinstance(exc, aiohttp.ClientConnectionError) else "http_error"
        seconds = time.monotonic() - started
        if error is None:
            await outbox.record_attempt(delivery.id, status=DELIVERED)
            self.metrics.attempt(hook.id, "delivered", seconds)
            log.info(
                "webhook_delivered", endpoint=hook.id, event_type=delivery.type, event_id=delivery.event_id
            )
            return DELIVERED
        attempts = delivery.attempts + 1
        give_up_at = delivery.created_at + timedelta(seconds=float(hook.retry.give_up_after))
        now = now_utc()
        if now >= give_up_at:
            await outbox.record_attempt(delivery.id, status=FAILED, error=error)
            self.metrics.attempt(hook.id, "failed", seconds)
            log.warning(
                "webhook_gave_up", endpoint=hook.id, event_type=delivery.type, reason=error, attempts=attempts
            )
            return FAILED
        delay = backoff(attempts, float(hook.retry.initial), float(hook.retry.max))
        retry_at = min(now + timedelta(seconds=delay), give_up_at)
        await outbox.record_attempt(delivery.id, status=PENDING, error=error, next_attempt_at=retry_at)
        self.metrics.attempt(hook.id, "retry", seconds)
        log.info(
            "webhook_retry",
            endpoint=hook.id,
            event_type=delivery.type,
            reason=error,
            attempts=attempts,
            retry_in=round((retry_at - now).total_seconds(), 1),
        )
        return PENDING

    async def _retention(self, config: Config) -> None:
        """At most hourly: drop finished events older than ``lifecycle.grant_retention``."""
        if self._last_retention is not None and time.monotonic() - self._last_retention < RETENTION_EVERY:
            return
        self._last_retention = time.monotonic()
        before = now_utc() - timedelta(seconds=float(config.lifecycle.grant_retention))
        deleted = await self.store.outbox.delete_finished_before(before)
        if deleted:
            log.info("webhook_events_reaped", count=deleted)
