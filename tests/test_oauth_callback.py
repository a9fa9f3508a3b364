"""engine.oauth.callback: the authorization response and identity checks, pure (no server needed)."""

from __future__ import annotations

import pytest

from engine.oauth.callback import (
    CallbackError,
    authorization_code,
    check_error,
    identity,
    state_hash,
)

ISSUER = "https://op.example"
STATE = "s" * 43


def code_of(params: dict[str, str], *, iss_required: bool = False, issuer: str | None = ISSUER) -> str:
    return authorization_code(params, state_hash=state_hash(STATE), issuer=issuer, iss_required=iss_required)


def test_good_answer_gives_the_code() -> None:
    """An answer with this flow's state, the right iss and a code yields the code."""
    assert code_of({"state": STATE, "iss": ISSUER, "code": "c-1"}) == "c-1"


def test_state_mismatch_is_refused() -> None:
    """Another flow's state (or none) is refused before anything else is looked at."""
    with pytest.raises(CallbackError) as other:
        code_of({"state": "t" * 43, "code": "c-1"})
    assert other.value.error == "invalid_state" and not other.value.from_provider
    with pytest.raises(CallbackError) as missing:
        code_of({"code": "c-1"})
    assert missing.value.error == "invalid_request" and "no state" in str(missing.value.description)


def test_iss_mismatch_is_refused() -> None:
    """RFC 9207: an iss naming another issuer is refused (mix-up attack)."""
    with pytest.raises(CallbackError) as info:
        code_of({"state": STATE, "iss": "https://evil.example", "code": "c-1"})
    assert info.value.error == "invalid_iss" and "another issuer" in str(info.value.description)


def test_iss_missing_where_required() -> None:
    """A missing iss is refused only when the provider advertises the iss parameter."""
    with pytest.raises(CallbackError) as info:
        code_of({"state": STATE, "code": "c-1"}, iss_required=True)
    assert info.value.error == "invalid_iss" and "missing iss" in str(info.value.description)
    assert code_of({"state": STATE, "code": "c-1"}, iss_required=False) == "c-1"
    assert code_of({"state": STATE, "iss": "whatever", "code": "c-1"}, issuer=None) == "c-1"


def test_error_callback_is_the_providers_refusal() -> None:
    """error= (the user said no) is reported as the provider's, with its description, cut to 64 chars."""
    params = {"state": STATE, "error": "access_denied", "error_description": "the user said no"}
    with pytest.raises(CallbackError) as info:
        code_of(params)
    assert info.value.from_provider and info.value.error == "access_denied"
    assert info.value.description == "the user said no"
    with pytest.raises(CallbackError) as long:
        check_error({"error": "x" * 200})
    assert long.value.error == "x" * 64


def test_missing_code_is_refused() -> None:
    """A success answer without a code is an invalid request."""
    with pytest.raises(CallbackError) as info:
        code_of({"state": STATE, "iss": ISSUER})
    assert info.value.error == "invalid_request" and "no code" in str(info.value.description)


def test_nonce_mismatch_is_refused() -> None:
    """An id_token whose nonce is not the flow's is refused; an openid flow without id_token too."""
    claims = {"sub": "u-1", "nonce": "other"}
    with pytest.raises(CallbackError) as info:
        identity(id_claims=claims, nonce="n-1", user_info={})
    assert info.value.error == "invalid_id_token" and "nonce" in str(info.value.description)
    with pytest.raises(CallbackError) as absent:
        identity(id_claims=None, nonce="n-1", user_info={"sub": "u-1"})
    assert absent.value.error == "invalid_id_token" and "no id_token" in str(absent.value.description)
    with pytest.raises(CallbackError):
        identity(id_claims={"sub": "u-1"}, nonce="n-1", user_info={})  # no nonce claim at all


def test_sub_mismatch_between_user_info_and_id_token() -> None:
    """User info naming another sub than the id_token's is refused."""
    with pytest.raises(CallbackError) as info:
        identity(id_claims={"sub": "u-1", "nonce": "n-1"}, nonce="n-1", user_info={"sub": "u-2"})
    assert info.value.error == "invalid_user_info"


def test_identity_subject_order() -> None:
    """The subject is the id_token's sub, else the user info path, else the token answer's."""
    who = identity(id_claims={"sub": "u-1", "nonce": "n"}, nonce="n", user_info={"sub": "u-1", "x": 1})
    assert who.subject == "u-1" and who.user_info == {"sub": "u-1", "x": 1}
    gh = identity(id_claims=None, nonce=None, user_info={"id": 42}, user_id_path="id")
    assert gh.subject == "42" and gh.user_info == {"id": 42}
    slack = identity(id_claims=None, nonce=None, user_info={}, token_subject="U123")
    assert slack.subject == "U123"
    claims_only = identity(id_claims={"sub": "u-9", "nonce": "n"}, nonce="n", user_info={})
    assert claims_only.user_info == {"sub": "u-9", "nonce": "n"}
    assert identity(id_claims=None, nonce=None, user_info={}).subject is None
