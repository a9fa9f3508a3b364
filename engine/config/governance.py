"""``tools.hooks`` and ``tools.approval``: checks beyond the types (DESIGN.md "Governance").

Hook ids are unique; a hook URL is absolute https (http for loopback or in development); ``cache``
is for access hooks only and defaults to 30s there; a hook's timeout is between 100ms and 60s.
Approval rules name at least one glob and a ttl of at least 10s; ``approver: user`` needs the
``login:`` section (the approval page is for the signed-in user).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from engine.config.convert import Context, Duration, field_line
from engine.config.loader import check_url
from engine.config.model import Config

ACCESS_CACHE_DEFAULT = Duration(30)


def _item_line(data: Any, section: str, index: int) -> int | None:
    tools = data.get("tools") if isinstance(data, Mapping) else None
    items = tools.get(section) if isinstance(tools, Mapping) else None
    return field_line(items, index) if items is not None else None


def check_governance(config: Config, data: Any, ctx: Context) -> Config:
    hooks = []
    seen: set[str] = set()
    for i, hook in enumerate(config.tools.hooks):
        path, line = f"tools.hooks[{i}]", _item_line(data, "hooks", i)
        if not hook.id.strip() or hook.id in seen:
            raise ctx.error(f"hook ids must be unique and non-empty, got {hook.id!r}", f"{path}.id", line)
        seen.add(hook.id)
        check_url(hook.url, f"{path}.url", line, ctx, allow_http=config.api.development)
        if not 0.1 <= float(hook.timeout) <= 60:
            raise ctx.error("must be between 100ms and 60s", f"{path}.timeout", line)
        if not hook.tools or any(not g.strip() for g in hook.tools):
            raise ctx.error('needs at least one non-empty glob ("*" for every tool)', f"{path}.tools", line)
        if hook.kind != "access" and hook.cache is not None:
            raise ctx.error("cache is for access hooks only", f"{path}.cache", line)
        if hook.kind == "access" and hook.cache is None:
            hook = dataclasses.replace(hook, cache=ACCESS_CACHE_DEFAULT)
        hooks.append(hook)
    for i, rule in enumerate(config.tools.approval):
        path, line = f"tools.approval[{i}]", _item_line(data, "approval", i)
        if not rule.tools or any(not g.strip() for g in rule.tools):
            raise ctx.error("needs at least one non-empty glob, e.g. Gmail.SendEmail", f"{path}.tools", line)
        if float(rule.ttl) < 10:
            raise ctx.error("must be at least 10s", f"{path}.ttl", line)
        if rule.approver == "user" and config.login is None:
            raise ctx.error(
                "approver user decides on a page for the signed-in user, which needs the login: section "
                "(or use approver: app)",
                f"{path}.approver",
                line,
            )
    tools = dataclasses.replace(config.tools, hooks=tuple(hooks))
    return dataclasses.replace(config, tools=tools)
