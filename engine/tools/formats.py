"""Tool definitions as callers want them: arcadepy's ToolDefinition, OpenAI and Anthropic function schemas."""

from __future__ import annotations

from typing import Any

JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "json": "object",
    "array": "array",
}


def value_schema_to_json(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Arcade's ValueSchema as JSON Schema."""
    if not schema:
        return {}
    val_type = schema.get("val_type", "json")
    out: dict[str, Any] = {"type": JSON_TYPES.get(val_type, "object")}
    if schema.get("description"):
        out["description"] = schema["description"]
    if schema.get("enum"):
        out["enum"] = list(schema["enum"])
    if val_type == "array":
        inner: dict[str, Any] = {"val_type": schema.get("inner_val_type") or "json"}
        if schema.get("inner_properties"):
            inner["properties"] = schema["inner_properties"]
            inner["required_keys"] = schema.get("inner_required_keys")
        out["items"] = value_schema_to_json(inner)
    if val_type == "json" and schema.get("properties"):
        out["properties"] = {k: value_schema_to_json(v) for k, v in schema["properties"].items()}
        if schema.get("required_keys"):
            out["required"] = list(schema["required_keys"])
    if schema.get("nullable"):
        out["type"] = [out["type"], "null"]
    return out


def input_json_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a tool's input object."""
    params = (tool.get("input") or {}).get("parameters") or []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        prop = value_schema_to_json(param.get("value_schema"))
        if param.get("description"):
            prop["description"] = param["description"]
        properties[param["name"]] = prop
        if param.get("required"):
            required.append(param["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def function_name(tool: dict[str, Any]) -> str:
    """``Toolkit_Tool``: the name models see (a dot is not allowed in function names)."""
    return f"{tool['toolkit']['name']}_{tool['name']}"


def to_openai(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": function_name(tool),
            "description": tool.get("description") or "",
            "parameters": input_json_schema(tool),
        },
    }


def to_anthropic(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": function_name(tool),
        "description": tool.get("description") or "",
        "input_schema": input_json_schema(tool),
    }


FORMATS = {"openai": to_openai, "anthropic": to_anthropic}


def to_arcade(
    tool: dict[str, Any], *, secrets_present: set[str] | None = None, include_format: list[str] | None = None
) -> dict[str, Any]:
    """arcadepy's ToolDefinition (with ``qualified_name`` and requirement status)."""
    requirements = dict(tool.get("requirements") or {})
    secrets = requirements.get("secrets") or []
    if secrets and secrets_present is not None:
        requirements["secrets"] = [{"key": s["key"], "met": s["key"] in secrets_present} for s in secrets]
    out = {
        "name": tool["name"],
        "fully_qualified_name": tool["fully_qualified_name"],
        "qualified_name": f"{tool['toolkit']['name']}.{tool['name']}",
        "description": tool.get("description"),
        "toolkit": tool["toolkit"],
        "input": tool.get("input") or {"parameters": []},
        "output": tool.get("output"),
        "requirements": requirements,
    }
    if include_format:
        fmt = include_format[0]
        if fmt in FORMATS:
            out["formatted_schema"] = FORMATS[fmt](tool)
    return out
