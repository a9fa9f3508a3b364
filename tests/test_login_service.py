"""engine.login.service: which claims name a user (verified email, domains, other claims)."""

from __future__ import annotations

from typing import Any

from engine.config.convert import Duration
from engine.config.model import LoginConfig
from engine.login.service import LoginService, normalise


def user(claims: dict[str, Any], **login: Any) -> tuple[str | None, str | None]:
    cfg = LoginConfig(provider="corp", session_ttl=Duration(3600), **login)
    result = LoginService._user(None, cfg, claims, "/connections")  # type: ignore[arg-type]
    return result.user_id, result.reason


def test_email_needs_email_verified_true() -> None:
    """user_claim email: a verified address is the user (lower-cased); unverified or absent is refused."""
    assert user({"email": "Alice@Example.Test", "email_verified": True}) == ("alice@example.test", None)
    assert user({"email": "a@example.test", "email_verified": False}) == (None, "email_unverified")
    assert user({"email": "a@example.test"}) == (None, "email_unverified")
    assert user({"email_verified": True}) == (None, "no_email")


def test_allowed_domains_apply_to_the_verified_email_whatever_the_claim() -> None:
    """allowed_domains compares the verified email's domain, case-insensitively, also with user_claim sub."""
    claims = {"sub": "u1", "email": "a@Corp.Example", "email_verified": True}
    assert user(claims, user_claim="sub", allowed_domains=("corp.example",)) == ("u1", None)
    assert user(claims, user_claim="sub", allowed_domains=("other.example",)) == (None, "domain_not_allowed")
    assert user({"sub": "u1"}, user_claim="sub", allowed_domains=("corp.example",)) == (None, "no_email")


def test_other_claims_are_taken_as_they_are() -> None:
    """sub and preferred_username are not normalised; a missing or empty claim is refused."""
    assert user({"sub": "Abc"}, user_claim="sub") == ("Abc", None)
    assert user({"preferred_username": "Bob"}, user_claim="preferred_username") == ("Bob", None)
    assert user({"oid": 42}, user_claim="oid") == ("42", None)
    assert user({"sub": ""}, user_claim="sub") == (None, "no_user_claim")
    assert normalise("email", " A@B.C ") == "a@b.c" and normalise("sub", "A") == "A"
