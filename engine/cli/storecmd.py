"""Shared by the commands that open the database: config -> keyring -> store."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.cli.main import load
from engine.crypto.keys import keyring_from_config
from engine.store.store import Store


@asynccontextmanager
async def open_store(args: argparse.Namespace, *, migrate: bool = False) -> AsyncIterator[Store]:
    loaded = load(args)
    config = loaded.config
    keyring = keyring_from_config(config, loaded.base_dir)
    store = await Store.open(
        config.storage.url or "",
        keyring,
        busy_timeout=float(config.storage.busy_timeout),
        pool_size=config.storage.pool_size,
        migrate=migrate,
    )
    try:
        yield store
    finally:
        await store.close()
