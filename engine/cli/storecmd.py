"""Shared by the commands that open the database: the engine's own wiring (``engine.wiring``), opened
as far as a command needs it. A command's audit records go through the same auditor, redactor and
sinks as the server's (the stdout sink writes to stderr here, so a command's output stays clean)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from engine.cli.main import load
from engine.store.store import Store
from engine.wiring.options import WiringOptions
from engine.wiring.services import STORE, open_services
from engine.wiring.settings import Settings


def cli_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``-c engine.yaml`` (what the server would run with)."""
    from engine.net import ClientAddress

    loaded = load(args)
    return Settings(
        config=loaded.config,
        providers=dict(loaded.providers),
        source=loaded.source,
        client_address=ClientAddress(loaded.config.api.trusted_proxies),
        base_dir=loaded.base_dir,
    )


@asynccontextmanager
async def open_engine(
    args: argparse.Namespace, *, until: web.AppKey[Any], migrate: bool = False
) -> AsyncIterator[web.Application]:
    """The engine's services up to the one under ``until`` (no background jobs); closed after."""
    options = WiringOptions(scheduler=False, migrate=migrate, audit_stdout=sys.stderr)
    async with open_services(cli_settings(args), until=until, options=options) as app:
        yield app


@asynccontextmanager
async def open_store(args: argparse.Namespace, *, migrate: bool = False) -> AsyncIterator[Store]:
    async with open_engine(args, until=STORE, migrate=migrate) as app:
        yield app[STORE]
