"""What the flow service answers, as records: the API edge (:mod:`engine.api.shapes`) makes the JSON."""

from __future__ import annotations

import dataclasses
from typing import Literal

AuthStatus = Literal["pending", "completed", "failed"]


@dataclasses.dataclass(frozen=True, repr=False)
class Authorization:
    """A user's authorization for a provider: a flow in progress (``url`` to visit) or a grant.

    ``id``/``provider_id`` are None only for a tool that needs no authorization. ``token`` is set
    only when ``security.token_exposure`` is ``api`` (the answer is then never cached).
    """

    id: str | None
    status: AuthStatus
    provider_id: str | None
    user_id: str
    scopes: tuple[str, ...]
    url: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never the token
        return (
            f"Authorization(id={self.id!r}, status={self.status!r}, provider_id={self.provider_id!r}, "
            f"scopes={self.scopes!r})"
        )


@dataclasses.dataclass(frozen=True)
class CallbackResult:
    """What the browser gets: a redirect (``redirect``) or a page (``page`` kind and texts)."""

    outcome: str  # completed | verifying | failed | expired | invalid | redirect
    redirect: str | None = None
    message: str = ""
    detail: str | None = None
    flow_id: str | None = None
    next_uri: str | None = None
