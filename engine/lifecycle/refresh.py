"""Refresh: one path for scheduled and on-demand refreshes, single-flight in-process and across replicas.

``Refresher.refresh(grant_id)`` takes an in-process lock for the grant, then a database lease
(``grant:<id>``, renewed while the provider call runs), re-reads the row under the lease, and only
then calls the provider. The new tokens are written with a version check in one transaction; a
refresh token not sent back keeps the old one (SECURITY.md 21, 22).

Failures: ``invalid_grant``/``unauthorized_client``... → re-read (a changed refresh token is a lost
race) → else ``needs_reauth``, never retried. 5xx/429/timeouts/network → backoff with jitter,
``Retry-After`` honoured, tokens unchanged, failure count and next attempt kept on the grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

import structlog

from engine.clock import now_utc
from engine.config.model import Config
from engine.errors import ProviderError, Unavailable
from engine.events import GrantEvent, Publish, RefreshObserved, RefreshResult, discard
from engine.grants.writer import GrantWriter, failing_since, grant_event, reported_failing
from engine.lifecycle.pace import Paused, ProviderPace
from engine.oauth.client import OAuthClient
from engine.oauth.tokens import REAUTH_ERRORS, TokenSet
from engine.providers.model import Provider
from engine.store.records import GrantRecord
from engine.store.store import Store

log = structlog.get_logger("keyturn.lifecycle")

STORE_GRACE = 10.0  # seconds a shutdown waits for provider answers already received to be stored


@dataclasses.dataclass(frozen=True)
class RefreshOutcome:
    # refreshed | skipped | lost_race | needs_reauth | retry | no_refresh_token | busy | paused
    outcome: str
    grant: GrantRecord | None = None


@dataclasses.dataclass
class RefreshDeps:
    store: Store
    oauth: OAuthClient
    config: Callable[[], Config]
    providers: Callable[[], Mapping[str, Provider]]
    writer: GrantWriter  # writes the new tokens with their refresh schedule
    publish: Publish = discard  # the event stream (engine.events): grant events, refresh results
    owner: str = dataclasses.field(default_factory=lambda: f"kt-{uuid.uuid4().hex[:12]}")


def backoff(failures: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; never sooner than ``Retry-After``."""
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    delay = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not a secret
    if retry_after:
        delay = max(delay, retry_after)
    return delay


class Refresher:
    def __init__(self, deps: RefreshDeps) -> None:
        self.d = deps
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[str, asyncio.Task[RefreshOutcome]] = {}
        self._writes: set[asyncio.Task[RefreshOutcome]] = set()  # answers being stored: never cancelled
        self.pace = ProviderPace()  # per-provider cap on calls in flight, and a pause after a 429

    async def drain(self, grace: float) -> None:
        """Let in-flight refreshes finish (or cancel them after ``grace`` seconds): used on shutdown.

        A refresh whose provider has answered is not cancelled: its tokens are stored first (the
        provider may already have rotated the refresh token), within ``STORE_GRACE`` more seconds.
        """
        tasks = [t for t in self._inflight.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        writes = [t for t in self._writes if not t.done()]
        if writes:
            await asyncio.wait(writes, timeout=STORE_GRACE)

    async def refresh(self, grant_id: str, *, force: bool = False, leased: bool = False) -> RefreshOutcome:
        """Refresh one grant (single-flight: concurrent callers share one provider call).

        ``leased``: the caller already holds the grant's lease (a scheduler pass claims in bulk).
        """
        task = self._inflight.get(grant_id)
        if task is None:
            work = (
                self._refresh_leased(grant_id, force=force)
                if leased
                else self._refresh(grant_id, force=force)
            )
            task = asyncio.ensure_future(work)
            self._inflight[grant_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(grant_id, None))
        return await asyncio.shield(task)

    async def _refresh(self, grant_id: str, *, force: bool) -> RefreshOutcome:
        store = self.d.store
        lease_name = f"grant:{grant_id}"
        ttl = float(self.d.config().lifecycle.lease_ttl)
        if not await store.leases.acquire(lease_name, self.d.owner, ttl):
            return RefreshOutcome("busy")
        renew = asyncio.create_task(self._renew(lease_name, ttl))
        try:
            return await self._refresh_leased(grant_id, force=force)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            with contextlib.suppress(Exception):
                await store.leases.release(lease_name, self.d.owner)

    async def _renew(self, name: str, ttl: float) -> None:
        while True:
            await asyncio.sleep(max(ttl / 3, 0.5))
            with contextlib.suppress(Exception):
                await self.d.store.leases.renew(name, self.d.owner, ttl)

    async def _refresh_leased(self, grant_id: str, *, force: bool) -> RefreshOutcome:
        store = self.d.store
        grant = await store.grants.get(grant_id)  # re-read under the lease
        if grant is None or grant.status != "active":
            return RefreshOutcome("skipped", grant)
        provider = self.d.providers().get(grant.provider_id)
        if provider is None:
            return RefreshOutcome("skipped", grant)
        if not force and grant.next_refresh_at is not None and grant.next_refresh_at > now_utc():
            return RefreshOutcome("skipped", grant)  # someone else refreshed it meanwhile
        if not grant.refresh_token:
            return RefreshOutcome("no_refresh_token", grant)
        started = time.monotonic()
        timeout = float(self.d.config().lifecycle.refresh_timeout)
        try:
            async with self.pace.slot(provider.id, provider.refresh_concurrency, max_wait=timeout):
                async with asyncio.timeout(timeout):  # no extra task per call, as wait_for makes
                    tokens: TokenSet = await self.d.oauth.refresh(provider, grant.refresh_token)
        except Paused:  # the provider said 429 to another call: the grant stays due, unchanged
            return RefreshOutcome("paused", grant)
        except TimeoutError:
            return await self._failed(
                grant, provider, ProviderError("refresh timed out", kind="timeout", retryable=True), started
            )
        except ProviderError as exc:
            if exc.kind == "rate_limited":  # every call to this provider waits, not only this grant's
                self.pace.pause(provider.id, exc.retry_after)
            return await self._failed(grant, provider, exc, started)
        # the provider answered (and may have rotated the refresh token already): the next thing done
        # is storing the answer, and a shutdown cancelling this refresh does not stop that
        write = asyncio.ensure_future(self._store_answer(grant, provider, tokens, started))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        return await asyncio.shield(write)

    async def _store_answer(
        self, grant: GrantRecord, provider: Provider, tokens: TokenSet, started: float
    ) -> RefreshOutcome:
        store = self.d.store
        updated = await self.d.writer.store_refreshed(grant, provider, tokens)
        if updated is None:
            self._observe(provider.id, "lost_race", started)
            return RefreshOutcome("lost_race", await store.grants.get(grant.id))
        self._observe(provider.id, "refreshed", started)
        self.d.publish(
            GrantEvent(name="grant.refreshed", outcome="success", user_id=grant.user_id, provider=provider.id)
        )
        return RefreshOutcome("refreshed", updated)

    async def _failed(
        self, grant: GrantRecord, provider: Provider, exc: ProviderError, started: float
    ) -> RefreshOutcome:
        store = self.d.store
        if exc.kind in REAUTH_ERRORS:
            current = await store.grants.get(grant.id)
            if current is not None and current.refresh_token != grant.refresh_token:
                self._observe(provider.id, "lost_race", started)
                return RefreshOutcome("lost_race", current)
            await store.grants.set_status(grant.id, "needs_reauth", last_error=exc.kind)
            self._observe(provider.id, "needs_reauth", started)
            self.d.publish(
                GrantEvent(
                    name="grant.needs_reauth",
                    outcome="failure",
                    user_id=grant.user_id,
                    provider=provider.id,
                    reason=exc.kind,
                )
            )
            return RefreshOutcome("needs_reauth", await store.grants.get(grant.id))
        config = self.d.config()
        lifecycle = config.lifecycle
        failures = int(grant.refresh_failures) + 1
        delay = backoff(
            failures, float(lifecycle.backoff_base), float(lifecycle.backoff_max), exc.retry_after
        )
        # failing since the last good refresh (or since it was granted) for longer than the window:
        # report it loudly (metric outcome "overdue", audit field overdue, the first time a webhook
        # event connection.refresh_failing) but keep the grant and retrying
        now = now_utc()
        since = failing_since(grant)
        overdue = (now - since).total_seconds() > float(lifecycle.failure_report_after)
        first = overdue and not reported_failing(grant, config)
        event = grant_event("connection.refresh_failing", grant, reason=exc.kind) if first else None
        await store.grants.record_failure(
            grant.id, error=exc.kind, next_refresh_at=now + timedelta(seconds=delay), event=event, at=now
        )
        self._observe(provider.id, "overdue" if overdue else "retry", started)
        self.d.publish(
            GrantEvent(
                name="grant.refresh_failed",
                outcome="error",
                user_id=grant.user_id,
                provider=provider.id,
                reason=exc.kind,
                failures=failures,
                retry_in=round(delay, 1),
                overdue=overdue,
            )
        )
        if overdue:
            log.warning(
                "refresh_overdue",
                provider=provider.id,
                reason=exc.kind,
                failures=failures,
                failing_for_s=round((now_utc() - since).total_seconds()),
            )
        log.info(
            "refresh_retry",
            provider=provider.id,
            reason=exc.kind,
            failures=failures,
            retry_in=round(delay, 1),
        )
        return RefreshOutcome("retry", await store.grants.get(grant.id))

    def _observe(self, provider: str, result: RefreshResult, started: float) -> None:
        self.d.publish(RefreshObserved(provider=provider, result=result, seconds=time.monotonic() - started))

    # ---- the token a tool call uses -----------------------------------------------------------
    async def usable_grant(
        self, user_id: str, provider_id: str, account: str | None = None
    ) -> GrantRecord | None:
        """The user's active grant with an unexpired access token (refreshed on demand), or None.

        ``account``: one of the user's accounts at the provider; None is the default account.
        """
        grant = await self.d.store.grants.find(user_id, provider_id, account)
        if grant is None or grant.status != "active":
            return None
        if grant.expires_at is None or grant.expires_at > now_utc() + timedelta(seconds=5):
            return grant
        result = await self.refresh(grant.id, force=True)
        if result.outcome == "busy":  # another replica holds the lease: wait for its write
            for _ in range(50):
                await asyncio.sleep(0.1)
                grant = await self.d.store.grants.get(grant.id)
                if grant is None or grant.status != "active":
                    return None
                if grant.expires_at is None or grant.expires_at > now_utc():
                    return grant
            raise Unavailable("the token is being refreshed by another replica; try again", retry_after=1)
        fresh = result.grant
        if fresh is None or fresh.status != "active":
            return None
        if fresh.expires_at is not None and fresh.expires_at <= now_utc():
            raise Unavailable("the provider could not refresh the token; try again later", retry_after=5)
        return fresh

    async def refresh_due(self, *, limit: int = 1000) -> dict[str, int]:
        """One scheduler pass: refresh every due grant with bounded concurrency and jitter.

        Due grants are taken ``limit`` at a time, and the next batch is claimed as soon as every
        grant of the previous one has started (fewer than ``refresh_concurrency`` wait for a slot),
        so the slots stay busy across batches instead of draining at each batch's end. The pass
        stops at a short batch, or when the previous batch has finished and nothing was refreshed
        since it was taken (grants that stay due, e.g. whose provider is gone, wait for the next
        pass); a previous batch still running is no such sign, however fast the next was taken.
        """
        horizon = now_utc()
        total: dict[str, int] = {}
        lifecycle = self.d.config().lifecycle
        slots = max(1, lifecycle.refresh_concurrency)
        pass_ = _Pass(asyncio.Semaphore(slots), slots, total)
        busy: set[str] = set()  # grants of batches still running: not fetched again
        batches: list[asyncio.Task[None]] = []
        taken_at: list[int] = []  # refreshes counted when each batch was taken
        try:
            while True:
                taken_at.append(total.get("refreshed", 0))
                due = await self.d.store.grants.due_ids(horizon, limit, exclude=busy)
                if not due:
                    break
                ids = set(due)
                busy.update(ids)
                pass_.started.clear()
                batch = asyncio.create_task(self._refresh_batch(due, pass_))
                batch.add_done_callback(_forget(busy, ids))
                batches.append(batch)
                if len(due) < limit:
                    break
                # the next batch once this one's grants have all (nearly) started, or it is done
                waiter = asyncio.ensure_future(pass_.started.wait())
                await asyncio.wait({waiter, batch}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if len(batches) > 1 and batches[-2].done() and total.get("refreshed", 0) == taken_at[-2]:
                    break
        finally:
            await asyncio.gather(*batches, return_exceptions=True)
        return total

    async def _refresh_batch(self, due: list[str], pass_: _Pass) -> None:
        lifecycle = self.d.config().lifecycle
        counts = pass_.counts
        if not due:
            return
        ttl = float(lifecycle.lease_ttl)
        names = {f"grant:{gid}": gid for gid in due}
        held = await self.d.store.leases.claim(list(names), self.d.owner, ttl)
        due = [names[n] for n in names if n in held]
        if len(held) < len(names):
            counts["busy"] = counts.get("busy", 0) + len(names) - len(held)  # another replica is on them
        # re-read under the leases in one query; each refresh's own re-read is then a cached hit
        # whose version is checked (batched), so a write since is still seen
        await self.d.store.grants.get_many(due)
        jitter = float(lifecycle.refresh_jitter)
        pass_.waiting += len(due)

        async def one(grant_id: str) -> None:
            if jitter > 0:  # spread the starts; the semaphore bounds how many run at once
                await asyncio.sleep(random.uniform(0, jitter))  # noqa: S311 - spreading load
            async with pass_.semaphore:
                pass_.waiting -= 1
                if pass_.waiting < pass_.slots:
                    pass_.started.set()
                try:
                    outcome = (await self.refresh(grant_id, leased=True)).outcome
                except Exception as exc:  # one bad grant must not stop the pass
                    log.error("refresh_error", grant_id=grant_id, error=type(exc).__name__)
                    outcome = "error"
                counts[outcome] = counts.get(outcome, 0) + 1

        async def keep_leases() -> None:
            while True:
                await asyncio.sleep(max(ttl / 3, 0.5))
                with contextlib.suppress(Exception):
                    await self.d.store.leases.renew_all(list(held), self.d.owner, ttl)

        keeper = asyncio.create_task(keep_leases())
        try:
            await asyncio.gather(*(one(g) for g in due))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await self.d.store.leases.release_all(list(held), self.d.owner)


def _forget(busy: set[str], ids: set[str]) -> Callable[[asyncio.Task[None]], None]:
    return lambda _task: busy.difference_update(ids)


@dataclasses.dataclass
class _Pass:
    """One scheduler pass: its slots (``refresh_concurrency``), shared by its overlapping batches."""

    semaphore: asyncio.Semaphore
    slots: int
    counts: dict[str, int]
    waiting: int = 0  # grants taken but not yet started
    started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
