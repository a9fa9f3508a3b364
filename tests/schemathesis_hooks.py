"""Schemathesis hooks for tests/test_api_openapi.py: a check that no issued token is in any response.

The tokens come in ``KEYTURN_TOKENS`` (comma-separated); the check names none of them when it fails.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

TOKENS = [t.encode() for t in os.environ.get("KEYTURN_TOKENS", "").split(",") if t]


@schemathesis.check
def no_token_in_response(ctx: Any, response: Any, case: Any) -> bool | None:
    """Fail when an access, refresh or id token value appears in a response's body or headers."""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
    for token in TOKENS:
        if token in response.content or token in headers:
            raise AssertionError(f"a token value ({len(token)} characters) is in the response")
    return None


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """Hold /v1/auth/status for at most a second: a found pending flow would otherwise wait 59 s."""
    wait = (query or {}).get("wait")
    if query is not None and isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 1:
        query["wait"] = 1
    return query
