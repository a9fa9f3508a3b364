"""Which ``auth.providers[]`` entry an ``auth_requirement`` (a tool's or an API caller's) names.

- An explicit ``id`` must be an enabled entry's id exactly, or the answer is ``unknown_provider``:
  a tool declaring ``Google(id="company-google-calendar")`` never gets another Google entry's client.
- A bare ``provider_id`` (a template, e.g. ``google``) names the entry with that id if there is one,
  else the one entry using that template; several entries using it (none with that id) are
  ``ambiguous_provider``, and the message lists their ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import BadRequest, NotFound
from engine.providers.model import Provider


def resolve_provider(providers: Mapping[str, Provider], requirement: Mapping[str, Any]) -> Provider:
    """The provider ``requirement`` names among the enabled ``providers`` (by entry id)."""
    wanted_id = requirement.get("id")
    wanted_pid = requirement.get("provider_id")
    if isinstance(wanted_id, str) and wanted_id:
        if wanted_id in providers:
            return providers[wanted_id]
        raise NotFound(
            f"unknown provider {wanted_id!r}: no enabled auth.providers[] entry has this id",
            error="unknown_provider",
        )
    if not isinstance(wanted_pid, str) or not wanted_pid:
        raise BadRequest("auth_requirement needs id or provider_id", error="invalid_request")
    if wanted_pid in providers:
        return providers[wanted_pid]
    matches = [p for p in providers.values() if p.template_id == wanted_pid]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise BadRequest(
            f"several providers use template {wanted_pid!r}; name one by auth_requirement.id "
            f"({', '.join(sorted(p.id for p in matches))})",
            error="ambiguous_provider",
        )
    raise NotFound(
        f"unknown provider {wanted_pid!r}: not an enabled auth.providers[] entry", error="unknown_provider"
    )


def requirement_scopes(requirement: Mapping[str, Any]) -> tuple[str, ...]:
    """The scopes an ``auth_requirement`` asks for (``oauth2.scopes``: a list, or one space-separated
    string), stripped and without repeats; a malformed list is a 400 naming the field."""
    oauth2 = requirement.get("oauth2") or {}
    if not isinstance(oauth2, Mapping):
        raise BadRequest("auth_requirement.oauth2 must be an object")
    scopes = oauth2.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) and s.strip() for s in scopes):
        raise BadRequest("auth_requirement.oauth2.scopes must be a list of non-empty strings")
    if len(scopes) > 100 or any(len(s) > 256 for s in scopes):
        raise BadRequest("auth_requirement.oauth2.scopes: too many or too long")
    return tuple(dict.fromkeys(s.strip() for s in scopes))
