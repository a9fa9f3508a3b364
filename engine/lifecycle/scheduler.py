"""APScheduler jobs: the refresh pass and the reaper, started and stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.clock import now_utc
from engine.config.model import Config
from engine.events import Publish, ReapEvent, discard
from engine.lifecycle.refresh import Refresher
from engine.store.store import Store

log = structlog.get_logger("keyturn.lifecycle")


class Lifecycle:
    """Owns the scheduler; ``start``/``stop`` from the app's cleanup context.

    ``store`` is reaped (flows, long-dead grants); ``retry_revocation`` is the revoker's
    (:meth:`engine.flows.revoke.Revoker.revoke`) for grants left revoked at a provider outage.
    """

    def __init__(
        self,
        refresher: Refresher,
        *,
        store: Store,
        config: Callable[[], Config],
        publish: Publish = discard,
        retry_revocation: Callable[[str], Awaitable[object]] | None = None,
        gauges: Callable[[], Awaitable[None]] | None = None,
        stop_grace: Callable[[], float] | None = None,
    ) -> None:
        self.gauges = gauges
        self.refresher = refresher
        self.store = store  # engine.store.Store
        self.config = config
        self.publish = publish
        self.retry_revocation = retry_revocation
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.passes = 0
        self._running: set[asyncio.Task[Any]] = set()
        # seconds a running pass may take to finish on shutdown (api.shutdown_grace)
        self._stop_grace = stop_grace or (lambda: float(config().api.shutdown_grace))

    @property
    def stop_grace(self) -> float:
        return self._stop_grace()

    def start(self) -> None:
        lifecycle = self.config().lifecycle
        self.scheduler.add_job(
            self.refresh_pass,
            "interval",
            seconds=float(lifecycle.refresh_interval),
            id="refresh",
            max_instances=1,
            coalesce=True,
            next_run_time=now_utc(),
        )
        self.scheduler.add_job(
            self.reap,
            "interval",
            seconds=float(lifecycle.reap_interval),
            id="reap",
            max_instances=1,
            coalesce=True,
            next_run_time=now_utc() + timedelta(seconds=5),
        )
        if self.gauges is not None:
            self.scheduler.add_job(
                self._gauges,
                "interval",
                seconds=15,
                id="gauges",
                max_instances=1,
                coalesce=True,
                next_run_time=now_utc(),
            )
        self.scheduler.start()

    def reschedule(self) -> None:
        """Apply the current ``refresh_interval`` and ``reap_interval`` (SIGHUP) to a running scheduler."""
        if not self.scheduler.running:
            return
        lifecycle = self.config().lifecycle
        for job, seconds in (
            ("refresh", float(lifecycle.refresh_interval)),
            ("reap", float(lifecycle.reap_interval)),
        ):
            current = self.scheduler.get_job(job)
            if current is not None and current.trigger.interval.total_seconds() != seconds:
                self.scheduler.reschedule_job(job, trigger="interval", seconds=seconds)
                log.info("job_rescheduled", job=job, interval_s=seconds)

    async def _gauges(self) -> None:
        assert self.gauges is not None
        self._track()
        try:
            await self.gauges()
        except Exception as exc:
            log.warning("gauges_failed", error=type(exc).__name__)

    async def stop(self) -> None:
        """Stop scheduling; let running passes finish within ``stop_grace``, then cancel them."""
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=False)
        grace = self.stop_grace
        deadline = asyncio.get_running_loop().time() + grace
        running = [t for t in self._running if not t.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        await self.refresher.drain(left)

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def refresh_pass(self) -> dict[str, int]:
        self._track()
        try:
            counts = await self.refresher.refresh_due()
        except Exception as exc:  # the next pass tries again; the reason is logged
            log.error("refresh_pass_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return {}
        self.passes += 1
        if counts:
            log.info("refresh_pass", **counts)
        return counts

    async def reap(self) -> dict[str, int]:
        """Expire unfinished flows, delete old flows, expired sessions, sign-ins, approvals and connect links,
        expired MCP codes and tokens, and long-dead grants, retry pending revocations."""
        self._track()
        store = self.store
        lifecycle = self.config().lifecycle
        out: dict[str, int] = {}
        try:
            now = now_utc()
            expired = await store.flows.expire_due(now)
            out["flows_expired"] = len(expired)
            out["flows_deleted"] = await store.flows.delete_older_than(
                now - timedelta(seconds=float(lifecycle.flow_retention))
            )
            if out["flows_deleted"]:
                self.publish(ReapEvent(name="flow.reaped", count=out["flows_deleted"]))
            out["sessions_deleted"] = await store.sessions.delete_expired(now)  # signed-in browsers
            out["logins_deleted"] = await store.logins.delete_expired(now)  # sign-ins never finished
            out["mcp_oauth_deleted"] = await store.mcp_oauth.reap(
                now
            )  # MCP codes and tokens a day past expiry
            # held tool calls (tools.approval) kept past their expiry as long as finished flows
            out["approvals_deleted"] = await store.approvals.delete_expired(
                now - timedelta(seconds=float(lifecycle.flow_retention))
            )
            # connect links: kept a while after expiry (their page says "expired"), then deleted
            out["connect_links_deleted"] = await store.connect.delete_expired_before(
                now - timedelta(seconds=float(lifecycle.flow_retention))
            )
            if self.retry_revocation is not None:
                revoked = await store.grants.list(status="revoked")
                for grant in revoked:  # one failing provider must not stop the others' retries
                    try:
                        await self.retry_revocation(grant.id)
                    except Exception as exc:
                        out["revocation_errors"] = out.get("revocation_errors", 0) + 1
                        log.error(
                            "revocation_retry_failed",
                            grant_id=grant.id,
                            provider=grant.provider_id,
                            error=type(exc).__name__,
                        )
            deleted = await store.grants.delete_revoked_before(
                now - timedelta(seconds=float(lifecycle.grant_retention))
            )
            out["grants_deleted"] = deleted
            if deleted:
                self.publish(ReapEvent(name="grant.reaped", count=deleted))
        except Exception as exc:
            log.error("reap_failed", error=type(exc).__name__, detail=str(exc)[:200])
        return out
