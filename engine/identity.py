"""Who sent a request: the identity the API-key middleware (:mod:`engine.api.auth`) found.

A request key of its own, below both the API and MCP layers: ``/mcp`` refuses a request the
middleware did not authenticate without importing the API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

IDENTITY: web.RequestKey[Any] = web.RequestKey("keyturn_api_identity", object)
