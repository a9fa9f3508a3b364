"""A provider as the engine uses it: a config entry merged over its template, variables filled."""

from __future__ import annotations

import dataclasses
from typing import Literal

from engine.providers.schema import ApiKeySpec, OAuth2Spec


@dataclasses.dataclass(frozen=True)
class Provider:
    id: str  # auth.providers[].id: what callers name in provider_id / id
    template_id: str | None  # the built-in template it came from (provider_id), if any
    client_id: str
    client_secret: str | None
    oauth2: OAuth2Spec  # merged and with {placeholders} filled
    description: str | None = None
    refresh_lead: float | None = None  # seconds; overrides lifecycle.refresh_lead
    max_token_age: float | None = None  # seconds; for tokens without expires_in
    type: Literal["oauth2", "api_key"] = "oauth2"
    api_key: ApiKeySpec | None = None  # type api_key: the fields the person enters, the optional check
    refresh_concurrency: int | None = None  # refreshes in flight to this provider at most (None: no cap)

    def __repr__(self) -> str:  # never show the secret
        return f"Provider(id={self.id!r}, template_id={self.template_id!r}, client_id={self.client_id!r})"
