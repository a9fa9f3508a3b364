"""Asking twice gets the same flow: which pending flow an authorize may hand out again.

Agents authorize before every call and retry in loops. A pending flow for the same user,
provider and account that asks for the same scopes, with the same ``next_uri`` and callback, is answered again
(same id, so the same ``/v1/oauth/start/{id}`` link) instead of starting a new one; only new flows
count toward ``security.rate_limiting``. A different ``next_uri`` is a different flow: the link a
person clicks must lead back where the app that handed it out asked. A flow with less than
:func:`min_left` to live is not handed out again: a new one is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Unpack

from engine.store.records import FlowRecord, NewFlow
from engine.store.store import Store

# a reused flow has at least this long left (or half the flow lifetime, when that is shorter)
MIN_LEFT = 60.0


def reuse_key(
    *,
    user_id: str,
    provider_id: str,
    scopes: Iterable[str],
    next_uri: str | None,
    redirect_uri: str,
    oidc: bool,
    account: str = "default",
) -> str:
    """The digest naming what a flow asks for (order of scopes does not matter)."""
    what = [user_id, provider_id, sorted(set(scopes)), next_uri, redirect_uri, oidc]
    if account != "default":  # the keys of flows pending before accounts existed stay the same
        what.append(account)
    return hashlib.sha256(json.dumps(what, separators=(",", ":")).encode("utf-8")).hexdigest()


def min_left(flow_ttl: float) -> float:
    """Seconds a pending flow must still be valid for to be handed out again."""
    return min(MIN_LEFT, flow_ttl / 2)


class KeyedLocks:
    """One :class:`asyncio.Lock` per key while someone holds or waits for it (memory follows use)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def find_or_start(
    store: Store,
    locks: KeyedLocks,
    key: str,
    *,
    valid_after: datetime,
    count_new: Callable[[], Awaitable[object]],
    refund: Callable[[object], Awaitable[None]],
    **values: Unpack[NewFlow],
) -> tuple[FlowRecord, bool]:
    """The pending flow for ``key`` or a new one: ``(flow, created)``.

    ``count_new`` counts a new flow toward the rate limit (raising when over it) and runs only when
    no flow can be handed out again. Identical authorizes in this process wait for each other, so
    the second finds the first's flow; across processes the database's unique key decides, and
    the loser's count (what ``count_new`` returned) is taken back with ``refund``.
    """
    async with locks.hold(key):
        flow = await store.flows.find_reusable(key, valid_after=valid_after)
        if flow is not None:
            return flow, False
        counted = await count_new()
        flow, created = await store.flows.create_or_reuse(key, valid_after=valid_after, **values)
        if not created:
            await refund(counted)
        return flow, created
