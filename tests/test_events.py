"""engine.events: one typed stream; every subscriber sees each event, the first failure is raised."""

from __future__ import annotations

import pytest

from engine.events import (
    AUDIT_NAMES,
    EVENT_NAMES,
    AccessEvent,
    Event,
    EventBus,
    FlowEvent,
    GrantEvent,
    ToolEvent,
)


def test_every_subscriber_sees_the_event_and_the_first_failure_is_raised() -> None:
    """A subscriber that raises does not keep the event from the later ones; the publisher gets the error."""
    bus = EventBus()
    seen: list[str] = []

    def failing(event: Event) -> None:
        raise RuntimeError("no sink")

    bus.subscribe(failing)
    stop = bus.subscribe(lambda e: seen.append(e.name))
    event = FlowEvent(name="flow.started", outcome="success", user_id="u", provider="acme", flow_id="f")
    with pytest.raises(RuntimeError, match="no sink"):
        bus.publish(event)
    assert seen == ["flow.started"]
    stop()
    with pytest.raises(RuntimeError):
        bus.publish(event)
    assert seen == ["flow.started"]


def test_fields_leave_out_what_an_event_does_not_carry() -> None:
    """An event's audit fields hold only the values it has, in a stable order."""
    flow = FlowEvent(name="flow.started", outcome="success", user_id="u", provider="acme", flow_id="f")
    assert flow.fields() == {"user_id": "u", "provider": "acme", "flow_id": "f"}
    grant = GrantEvent(
        name="grant.revoked", outcome="success", user_id="u", provider="acme", revoked_at_provider=True
    )
    assert grant.fields() == {"user_id": "u", "provider": "acme", "revoked_at_provider": True}
    assert AccessEvent(name="api_key.denied", reason="invalid", source_ip="127.0.0.1").fields() == {
        "reason": "invalid",
        "source_ip": "127.0.0.1",
    }


def test_a_tool_event_names_itself_from_its_result() -> None:
    """authorization_required is tool.denied (denied); success and failed are tool.executed."""

    def tool(result: str) -> ToolEvent:
        return ToolEvent(tool="Echo.Say", result=result, user_id=None, duration=0.1, worker="w")  # type: ignore[arg-type]

    assert (tool("authorization_required").name, tool("authorization_required").outcome) == (
        "tool.denied",
        "denied",
    )
    assert (tool("success").name, tool("success").outcome) == ("tool.executed", "success")
    assert (tool("failed").name, tool("failed").outcome) == ("tool.executed", "failure")
    assert (tool("refused").name, tool("refused").outcome) == ("tool.denied", "denied")  # by a hook


def test_every_audit_name_is_an_event_name() -> None:
    """The audited names are the event names but the metrics-only ones."""
    assert {"refresh.observed", "worker.checked", "hook.called"} == EVENT_NAMES - AUDIT_NAMES
