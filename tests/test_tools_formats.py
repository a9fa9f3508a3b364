"""engine.tools.formats: arcadepy, OpenAI and Anthropic shapes, as Arcade's own converters write them."""

# no `from __future__ import annotations`: arcade-tdk reads the tool signatures at runtime

from typing import Annotated, Any, Literal, NotRequired

import jsonschema
import pytest
from arcade_core.catalog import MaterializedTool
from arcade_core.converters.anthropic import to_anthropic as arcade_anthropic
from arcade_core.converters.openai import to_openai as arcade_openai
from arcade_tdk import ToolCatalog, tool
from arcadepy.types import ToolDefinition
from typing_extensions import TypedDict

from engine.tools.formats import FORMATS, input_json_schema, to_anthropic, to_arcade, to_openai


class Address(TypedDict):
    street: str
    city: str
    zip: NotRequired[str]


@tool
def search(
    query: Annotated[str, "What to look for"],
    kinds: Annotated[list[Literal["doc", "mail", "chat"]], "Which kinds"],
    limit: Annotated[int, "How many"] = 10,
    order: Annotated[Literal["new", "old"], "Sort order"] = "new",
    tags: Annotated[list[str] | None, "Tags"] = None,
    exact: Annotated[bool, "Exact match"] = False,
    score: Annotated[float | None, "Minimum score"] = None,
) -> list[str]:
    """Search the documents."""
    return [query]


@tool
def ship(
    to: Annotated[Address, "Where to"],
    extra: Annotated[list[Address], "More stops"],
    note: Annotated[str | None, "A note"] = None,
) -> str:
    """Ship a parcel."""
    return "ok"


@tool
def ping() -> str:
    """No parameters."""
    return "pong"


@pytest.fixture(scope="module")
def materialized() -> list[MaterializedTool]:
    catalog = ToolCatalog()
    for func in (search, ship, ping):
        catalog.add_tool(func, "Kit")
    return list(catalog)


def wire(tool_: MaterializedTool) -> dict[str, Any]:
    """The ToolDefinition as a worker sends it on /worker/tools."""
    return tool_.definition.model_dump(mode="json")


def test_openai_matches_arcade(materialized: list[MaterializedTool]) -> None:
    """The OpenAI format equals arcade_core's strict-mode converter output for every tool."""
    for tool_ in materialized:
        assert to_openai(wire(tool_)) == arcade_openai(tool_), tool_.definition.name


def test_anthropic_matches_arcade(materialized: list[MaterializedTool]) -> None:
    """The Anthropic format equals arcade_core's converter output for every tool."""
    for tool_ in materialized:
        assert to_anthropic(wire(tool_)) == arcade_anthropic(tool_), tool_.definition.name


def test_arcadepy_shape(materialized: list[MaterializedTool]) -> None:
    """to_arcade gives what arcadepy's ToolDefinition parses, with qualified_name and a formatted schema."""
    for tool_ in materialized:
        out = to_arcade(wire(tool_), secrets_present=set(), include_format=["anthropic"])
        parsed = ToolDefinition.model_validate(out)
        assert parsed.qualified_name == f"Kit.{tool_.definition.name}"
        assert parsed.formatted_schema == FORMATS["anthropic"](wire(tool_))


def by_name(materialized: list[MaterializedTool], name: str) -> dict[str, Any]:
    return next(wire(t) for t in materialized if t.definition.name == name)


def check(schema: dict[str, Any], value: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(value)]


def test_input_schema_accepts_what_callers_send(materialized: list[MaterializedTool]) -> None:
    """Input checking accepts list-of-enum values, nested objects, and null for optional parameters."""
    schema = input_json_schema(by_name(materialized, "Search"))
    assert check(schema, {"query": "q", "kinds": ["doc", "mail"]}) == []
    assert check(schema, {"query": "q", "kinds": [], "limit": None, "order": None, "tags": None}) == []
    ship_schema = input_json_schema(by_name(materialized, "Ship"))
    stop = {"street": "1 Main", "city": "X"}
    assert check(ship_schema, {"to": {**stop, "zip": "1"}, "extra": [stop]}) == []
    assert check(input_json_schema(by_name(materialized, "Ping")), {}) == []


def test_input_schema_refuses_mismatches(materialized: list[MaterializedTool]) -> None:
    """Input checking refuses a wrong enum item, a missing required parameter, and an unknown one."""
    schema = input_json_schema(by_name(materialized, "Search"))
    assert check(schema, {"query": "q", "kinds": ["fax"]})
    assert check(schema, {"kinds": []})
    assert check(schema, {"query": None, "kinds": []})  # a required parameter is not nullable
    assert check(schema, {"query": "q", "kinds": [], "loud": True})
    ship_schema = input_json_schema(by_name(materialized, "Ship"))
    assert check(ship_schema, {"to": {"street": "1 Main"}, "extra": []})
