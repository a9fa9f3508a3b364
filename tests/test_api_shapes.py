"""engine.api.shapes: Arcade's AuthorizationResponse and execute answer, made from the services' records."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.api.shapes import authorization_response, execution_response
from engine.flows.results import Authorization
from engine.tools.runner import Execution


def test_pending_authorization_has_its_link() -> None:
    """A pending flow carries its url; the context is empty."""
    auth = Authorization(
        id="fl_1", status="pending", provider_id="acme", user_id="u", scopes=("a",), url="https://k/x"
    )
    assert authorization_response(auth) == {
        "id": "fl_1",
        "status": "pending",
        "provider_id": "acme",
        "user_id": "u",
        "scopes": ["a"],
        "context": {},
        "url": "https://k/x",
    }


def test_completed_authorization_token_only_when_exposed() -> None:
    """The token is in context only when the service set it (token_exposure: api); repr never shows it."""
    auth = Authorization(
        id="gr_1", status="completed", provider_id="acme", user_id="u", scopes=(), token="t0k"
    )
    assert authorization_response(auth)["context"] == {"token": "t0k"} and "t0k" not in repr(auth)
    plain = Authorization(id="gr_1", status="completed", provider_id="acme", user_id="u", scopes=())
    assert authorization_response(plain)["context"] == {} and "url" not in authorization_response(plain)


def test_tool_without_auth_has_no_id_or_provider() -> None:
    """A tool needing no authorization answers completed without id and provider_id."""
    auth = Authorization(id=None, status="completed", provider_id=None, user_id="u", scopes=())
    assert authorization_response(auth) == {
        "status": "completed",
        "user_id": "u",
        "scopes": [],
        "context": {},
    }


def test_execution_response() -> None:
    """An execute answer has Arcade's fields; a pending authorization goes under output.authorization."""
    now = datetime.now(UTC)
    pending = Authorization(id="fl_1", status="pending", provider_id="acme", user_id="u", scopes=(), url="u:")
    answer = execution_response(Execution("ex_1", False, {}, 1.5, now, authorization=pending))
    assert answer["id"] == answer["execution_id"] == "ex_1" and answer["status"] == "failed"
    assert answer["execution_type"] == "immediate" and answer["duration"] == 1.5
    assert answer["finished_at"] == now.isoformat() and answer["success"] is False
    assert answer["output"] == {"authorization": authorization_response(pending)}
    done = execution_response(Execution("ex_2", True, {"value": 3}, 2.0, now))
    assert done["status"] == "success" and done["output"] == {"value": 3}
