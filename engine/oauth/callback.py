"""The authorization response checks, without I/O (RFC 6749 4.1.2, RFC 9207, OpenID Connect Core 3.1.3.7).

Inputs in — the callback's query parameters, what the flow expects (its state hash, the nonce it
sent), the provider's metadata (issuer, ``authorization_response_iss_parameter_supported``), the
id_token's claims and the user info —, the code or the user's identity out, or
:class:`CallbackError` naming what failed. The id_token's signature and its other claims are
checked by :mod:`engine.oauth.idtoken`; the flow service does the database and HTTP calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from engine.oauth.tokens import get_path


class CallbackError(Exception):
    """The callback cannot complete the flow: ``error`` (an OAuth error code) and a ``description``.

    ``from_provider``: the provider itself answered with ``error=`` (the page says it refused).
    """

    def __init__(self, error: str, description: str | None = None, *, from_provider: bool = False) -> None:
        super().__init__(error)
        self.error = error[:64]
        self.description = description
        self.from_provider = from_provider


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who signed in: the subject (id_token ``sub``, else the user info path, else the token answer's)."""

    subject: str | None
    user_info: Mapping[str, Any]


def state_hash(state: str) -> str:
    """What a flow stores of its state (the state itself is never stored)."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def nonce_matches(claims: Mapping[str, Any], nonce: str) -> bool:
    """The id_token's ``nonce`` is the one the flow sent (constant time)."""
    got = claims.get("nonce")
    return isinstance(got, str) and hmac.compare_digest(got.encode(), nonce.encode())


def check_state(params: Mapping[str, str], expected_hash: str) -> None:
    """The answer carries the state whose hash the flow stored."""
    state = params.get("state")
    if not state:
        raise CallbackError("invalid_request", "the provider's answer has no state")
    if not hmac.compare_digest(state_hash(state), expected_hash):
        raise CallbackError("invalid_state", "the answer's state is not this flow's")


def check_error(params: Mapping[str, str]) -> None:
    """The provider answered ``error=`` (RFC 6749 4.1.2.1): the user or the provider refused."""
    error = params.get("error")
    if error:
        raise CallbackError(error, params.get("error_description"), from_provider=True)


def check_issuer(params: Mapping[str, str], *, issuer: str | None, iss_required: bool) -> None:
    """RFC 9207: an ``iss`` must name the provider's issuer; it must be there when the provider says so."""
    if issuer is None:
        return
    iss = params.get("iss")
    if iss is not None and iss != issuer:
        raise CallbackError("invalid_iss", "the answer came from another issuer")
    if iss is None and iss_required:
        raise CallbackError("invalid_iss", "the provider's answer is missing iss")


def check_code(params: Mapping[str, str]) -> str:
    code = params.get("code")
    if not code:
        raise CallbackError("invalid_request", "the provider's answer has no code")
    return code


def authorization_code(
    params: Mapping[str, str], *, state_hash: str, issuer: str | None, iss_required: bool
) -> str:
    """The code from a successful authorization response, after the state, ``error=`` and ``iss`` checks."""
    check_state(params, state_hash)
    check_error(params)
    check_issuer(params, issuer=issuer, iss_required=iss_required)
    return check_code(params)


def check_id_token(id_claims: Mapping[str, Any] | None, *, nonce: str | None) -> None:
    """An openid request (``nonce`` set) needs an id_token, carrying that nonce."""
    if nonce is None:
        return
    if id_claims is None:
        raise CallbackError("invalid_id_token", "the provider sent no id_token for an openid request")
    if not nonce_matches(id_claims, nonce):
        raise CallbackError("invalid_id_token", "the id_token's nonce is not the flow's")


def identity(
    *,
    id_claims: Mapping[str, Any] | None,
    nonce: str | None,
    user_info: Mapping[str, Any],
    user_id_path: str = "sub",
    token_subject: str | None = None,
) -> Identity:
    """Who signed in, from the validated id_token's claims (None: no id_token) and the user info.

    The id_token checks of :func:`check_id_token`; user info naming a ``sub`` must name the id_token's.
    """
    check_id_token(id_claims, nonce=nonce)
    claims = id_claims or {}
    if claims and "sub" in user_info and user_info["sub"] != claims.get("sub"):
        raise CallbackError("invalid_user_info", "user info sub differs from the id_token's")
    subject = claims.get("sub") or get_path(user_info, user_id_path) or token_subject
    return Identity(str(subject) if subject is not None else None, user_info or claims)
