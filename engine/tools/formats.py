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

# How a schema is written (the same rules as arcade_core.converters, on the wire dicts):
# "openai": strict mode: every property required, optional ones accept null, additionalProperties false;
# "anthropic": plain JSON Schema, only required properties listed;
# "check": what the engine validates input with: "anthropic" plus null for optional and nullable
#          parameters (strict-mode callers send null for an omitted one) and no unknown parameters.
Mode = str


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _object(properties: dict[str, Any], required_keys: list[str] | None, mode: Mode) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, field in properties.items():
        out = _value(field, mode)
        if field.get("description"):
            out["description"] = field["description"]
        if mode == "openai":
            required = (name in required_keys) if required_keys is not None else not field.get("nullable")
            if field.get("nullable") or not required:
                _with_null(out)
        elif field.get("nullable"):
            _with_null(out)
        fields[name] = out
    schema: dict[str, Any] = {"type": "object", "properties": fields}
    if mode == "openai":
        schema["required"] = list(fields)
        schema["additionalProperties"] = False
    elif required_keys:
        schema["required"] = list(required_keys)
    return schema


def _value(schema: dict[str, Any], mode: Mode) -> dict[str, Any]:
    val_type = schema.get("val_type") or "json"
    inner = schema.get("inner_val_type")
    if val_type == "array" and inner:
        if inner == "json" and schema.get("inner_properties") is not None:
            items = _object(schema["inner_properties"], schema.get("inner_required_keys"), mode)
        else:
            items = {"type": JSON_TYPES.get(inner, "object")}
            if schema.get("enum"):  # an array's enum constrains its items
                items["enum"] = list(schema["enum"])
        return {"type": "array", "items": items}
    if val_type == "json" and schema.get("properties") is not None:
        return _object(schema["properties"], schema.get("required_keys"), mode)
    out: dict[str, Any] = {"type": JSON_TYPES.get(val_type, "object")}
    if schema.get("enum"):
        out["enum"] = list(schema["enum"])
    return out


def value_schema_to_json(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Arcade's ValueSchema as JSON Schema (a nullable value accepts null)."""
    if not schema:
        return {}
    out = _value(schema, "check")
    if schema.get("description"):
        out["description"] = schema["description"]
    return _with_null(out) if schema.get("nullable") else out


def parameters_schema(tool: dict[str, Any], mode: Mode) -> dict[str, Any]:
    """The JSON Schema of a tool's input object, written for ``mode``."""
    params = (tool.get("input") or {}).get("parameters") or []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        value_schema = param.get("value_schema") or {}
        prop = _value(value_schema, mode) if value_schema else {}
        optional = not param.get("required")
        if prop and (
            (mode == "openai" and optional)
            or (mode == "check" and (optional or value_schema.get("nullable")))
        ):
            _with_null(prop)
        if param.get("description"):
            prop["description"] = param["description"]
        properties[param["name"]] = prop
        if mode == "openai" or not optional:
            required.append(param["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if mode in ("openai", "check"):
        schema["additionalProperties"] = False
    return schema


def input_json_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema the engine checks a tool's input against."""
    return parameters_schema(tool, "check")


def function_name(tool: dict[str, Any]) -> str:
    """``Toolkit_Tool``: the name models see (a dot is not allowed in function names)."""
    return f"{tool['toolkit']['name']}_{tool['name']}"


def to_openai(tool: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's function tool in strict mode, as arcade_core.converters.openai writes it."""
    return {
        "type": "function",
        "function": {
            "name": function_name(tool),
            "description": tool.get("description") or "",
            "parameters": parameters_schema(tool, "openai"),
            "strict": True,
        },
    }


def to_anthropic(tool: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's tool, as arcade_core.converters.anthropic writes it."""
    return {
        "name": function_name(tool),
        "description": tool.get("description") or "",
        "input_schema": parameters_schema(tool, "anthropic"),
    }


FORMATS = {"openai": to_openai, "anthropic": to_anthropic}


def to_arcade(
    tool: dict[str, Any],
    *,
    secrets_present: set[str] | None = None,
    include_format: list[str] | None = None,
    auth_status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """arcadepy's ToolDefinition (with ``qualified_name`` and requirement status).

    ``auth_status`` (from ``ToolRunner.auth_statuses`` for one user) fills
    ``requirements.authorization.status/status_reason/token_status``; with it and ``secrets_present``
    known, ``requirements.met`` says whether the user can run the tool now.
    """
    requirements = dict(tool.get("requirements") or {})
    secrets = requirements.get("secrets") or []
    if secrets and secrets_present is not None:
        requirements["secrets"] = [{"key": s["key"], "met": s["key"] in secrets_present} for s in secrets]
    authorization = requirements.get("authorization")
    if isinstance(authorization, dict) and auth_status is not None:
        requirements["authorization"] = {**authorization, **auth_status}
    if secrets_present is not None and (not isinstance(authorization, dict) or auth_status is not None):
        auth_met = (
            not isinstance(authorization, dict) or (auth_status or {}).get("token_status") == "completed"
        )
        requirements["met"] = auth_met and all(s["key"] in secrets_present for s in secrets)
    out = {
        "name": tool["name"],
        "fully_qualified_name": tool.get("fully_qualified_name")
        or f"{tool['toolkit']['name']}.{tool['name']}",
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
