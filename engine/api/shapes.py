"""Arcade's response shapes, made at the API edge from the services' records.

``authorization_response``: Arcade's ``AuthorizationResponse`` (``/v1/auth/*``, ``/v1/tools/authorize``
and the ``authorization`` of an execute answer). ``execution_response``: ``/v1/tools/execute``.
"""

from __future__ import annotations

from typing import Any

from engine.flows.results import Authorization
from engine.tools.runner import Execution


def authorization_response(auth: Authorization) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if auth.id is not None:
        out["id"] = auth.id
    out["status"] = auth.status
    if auth.provider_id is not None:
        out["provider_id"] = auth.provider_id
    out["user_id"] = auth.user_id
    out["scopes"] = list(auth.scopes)
    out["context"] = {"token": auth.token} if auth.token is not None else {}
    if auth.url is not None:
        out["url"] = auth.url
    return out


def execution_response(execution: Execution) -> dict[str, Any]:
    output = dict(execution.output)
    if execution.authorization is not None:
        output["authorization"] = authorization_response(execution.authorization)
    return {
        "id": execution.id,
        "execution_id": execution.id,
        "execution_type": "immediate",
        "finished_at": execution.finished_at.isoformat(),
        "duration": execution.duration_ms,
        "status": "success" if execution.success else "failed",
        "success": execution.success,
        "output": output,
    }
