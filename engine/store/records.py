"""Rows as the engine uses them: decrypted, frozen, and with reprs that never show a secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict


@dataclasses.dataclass(frozen=True, repr=False)
class GrantRecord:
    id: str
    user_id: str
    provider_id: str
    status: str  # active | needs_reauth | revoked
    scopes: tuple[str, ...]
    access_token: str
    refresh_token: str | None
    id_token: str | None
    user_info: Mapping[str, Any] | None
    token_type: str
    expires_at: datetime | None
    subject: str | None
    token_metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None
    next_refresh_at: datetime | None
    refresh_failures: int
    last_error: str | None
    version: int
    account: str = "default"  # which of the user's accounts at the provider
    is_default: bool = False  # chosen as the default account (else the first connected is)

    def __repr__(self) -> str:
        return (
            f"GrantRecord(id={self.id!r}, provider_id={self.provider_id!r}, account={self.account!r}, "
            f"status={self.status!r}, "
            f"scopes={self.scopes!r}, expires_at={self.expires_at!r}, version={self.version})"
        )


@dataclasses.dataclass(frozen=True)
class OutboxEvent:
    """A webhook event to write in a change's transaction: its ``type`` (``connection.created`` ...)
    and ``data`` (never a token). Written by :func:`engine.store.outbox.write`."""

    type: str
    data: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, repr=False)
class TokenUpdate:
    """One refresh's result for :meth:`engine.store.grants.GrantRepo.update_tokens_many`; ``event``
    (``connection.recovered``) is written in the same transaction, only with the tokens."""

    grant_id: str
    expected_version: int
    access_token: str
    refresh_token: str | None  # None keeps the old one
    expires_at: datetime | None
    scopes: Sequence[str] | None
    id_token: str | None
    next_refresh_at: datetime | None
    event: OutboxEvent | None = None

    def __repr__(self) -> str:
        return f"TokenUpdate(grant_id={self.grant_id!r}, expected_version={self.expected_version})"


@dataclasses.dataclass(frozen=True, repr=False)
class FlowRecord:
    id: str
    user_id: str
    provider_id: str
    status: str  # pending | verifying | completed | failed | expired
    scopes: tuple[str, ...]
    code_verifier: str | None
    nonce: str | None
    redirect_uri: str
    next_uri: str | None
    grant_id: str | None
    error: str | None
    error_description: str | None
    created_at: datetime
    expires_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    account: str = "default"  # the account the grant is stored as

    def __repr__(self) -> str:
        return f"FlowRecord(id={self.id!r}, provider_id={self.provider_id!r}, status={self.status!r})"


class NewFlow(TypedDict):
    """What starts a flow (``FlowRepo.create``); the verifier and nonce are sealed on the way in."""

    user_id: str
    provider_id: str
    scopes: Sequence[str]
    code_verifier: str | None
    nonce: str | None
    redirect_uri: str
    next_uri: str | None
    expires_at: datetime
    account: NotRequired[str]  # default: "default"


@dataclasses.dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    tools: tuple[str, ...] | None = None  # globs over Toolkit.Tool the key may use; None: every tool
