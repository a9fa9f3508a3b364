"""The JSON Schemas of the HTTP API: request bodies the handlers are checked with and the answers they give.

Shapes follow ``arcadepy.types`` (Arcade's Engine API). These are the ``components.schemas`` of
``/v1/openapi.json`` and, for request bodies and parameters, what ``engine.api.spec`` validates with.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# no control characters (PostgreSQL refuses NUL in text), and not only spaces
PLAIN = r"^[^\x00-\x1f\x7f]+$"
BLANK = {"type": "string", "pattern": r"^\s*$"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def ident(description: str, *, max_length: int = 256, nullable: bool = False) -> Schema:
    """A non-blank name or id without control characters."""
    return {
        "type": ["string", "null"] if nullable else "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": PLAIN,
        "not": BLANK,
        "x-error": f"must be a non-blank string of at most {max_length} characters, no control characters",
        "description": description,
    }


def _optional(schema: Schema) -> Schema:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}
NEXT_URI: Schema = {
    "type": ["string", "null"],
    "maxLength": 2048,
    "description": "Where the user's browser goes after authorizing; must be in security.next_uri_allowlist.",
}

ACCOUNT: Schema = ident(
    "Which of the user's accounts at the provider (work, personal); absent: the user's default account"
    " (the first connected, until the person chooses another on /connections; a new user's is 'default').",
    max_length=128,
    nullable=True,
)


def page(item: str) -> Schema:
    return {
        "type": "object",
        "required": ["items", "total_count", "offset", "limit", "page_count"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "total_count": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 0},
            "page_count": {"type": "integer", "minimum": 0},
        },
    }


SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "Every error answer: the HTTP status, a stable machine word, a message safe to show.",
        "required": ["code", "error", "msg"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "error": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "msg": {"type": "string"},
        },
    },
    # ---- request bodies --------------------------------------------------------------------------
    "AuthRequirement": {
        "type": "object",
        "description": "The provider to authorize with (id or provider_id) and the scopes wanted.",
        "properties": {
            "id": ident("A provider entry's id (one of id or provider_id is needed).", nullable=True),
            "provider_id": ident("A provider entry's id or template name.", nullable=True),
            "provider_type": {
                "type": ["string", "null"],
                "enum": ["oauth2", "api_key", "", None],
                "x-error": "is not supported (oauth2 or api_key)",
            },
            "oauth2": {
                "type": ["object", "null"],
                "properties": {
                    "scopes": {
                        "type": ["array", "string", "null"],
                        "description": "A list of scopes (or one space-separated string).",
                        "maxItems": 100,
                        "maxLength": 25600,
                        "items": ident("A scope."),
                    }
                },
            },
        },
    },
    "AuthorizeRequest": {
        "type": "object",
        "required": ["user_id", "auth_requirement"],
        "properties": {
            "user_id": ident("The end user the authorization is for."),
            "auth_requirement": ref("AuthRequirement"),
            "next_uri": NEXT_URI,
            "account": ACCOUNT,
        },
    },
    "ConfirmUserRequest": {
        "type": "object",
        "required": ["flow_id", "user_id"],
        "properties": {
            "flow_id": ident("The flow_id the verifier was redirected with."),
            "user_id": ident("The user signed in to the application."),
        },
    },
    "ToolAuthorizeRequest": {
        "type": "object",
        "required": ["tool_name", "user_id"],
        "properties": {
            "tool_name": ident("Toolkit.Tool (or Toolkit_Tool)."),
            "user_id": ident("The end user."),
            "next_uri": NEXT_URI,
            "tool_version": _optional(STRING),
            "account": ACCOUNT,
        },
    },
    "ToolExecuteRequest": {
        "type": "object",
        "required": ["tool_name"],
        "properties": {
            "tool_name": ident("Toolkit.Tool (or Toolkit_Tool)."),
            "input": {"type": ["object", "null"], "description": "The tool's parameters."},
            "user_id": ident("The end user (needed for tools that need authorization).", nullable=True),
            "run_at": {
                "type": ["string", "null"],
                "maxLength": 0,
                "x-error": "is not supported (scheduled execution); call without run_at",
            },
            "tool_version": _optional(STRING),
            "include_error_stacktrace": {"type": ["boolean", "null"]},
            "account": ACCOUNT,
        },
    },
    "ConnectSessionRequest": {
        "type": "object",
        "required": ["user_id"],
        "properties": {
            "user_id": ident("The user who connects their accounts on the page."),
            "providers": {
                "type": ["array", "null"],
                "minItems": 1,
                "maxItems": 50,
                "items": ident("A provider entry's id.", max_length=64),
                "description": "The providers the page offers (default: every configured one).",
            },
            "next_uri": NEXT_URI,
            "ttl": {
                "type": ["number", "string", "null"],
                "maxLength": 32,
                "description": "Seconds, or a duration like 15m, between 1m and 24h (default 15m).",
            },
        },
    },
    # ---- answers ---------------------------------------------------------------------------------
    "AuthorizationResponse": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "id": STRING,
            "status": {"enum": ["not_started", "pending", "completed", "failed"]},
            "url": {"type": "string", "description": "The link the user opens (pending only)."},
            "provider_id": STRING,
            "user_id": STRING,
            "scopes": STRINGS,
            "context": {
                "type": "object",
                "properties": {"token": STRING, "user_info": {"type": "object"}},
                "description": "token only with security.token_exposure: api.",
            },
        },
    },
    "ConfirmUserResponse": {
        "type": "object",
        "required": ["auth_id"],
        "properties": {"auth_id": STRING, "next_uri": _optional(STRING)},
    },
    "ToolDefinition": {
        "type": "object",
        "required": ["name", "fully_qualified_name", "qualified_name", "toolkit", "input", "requirements"],
        "properties": {
            "name": STRING,
            "fully_qualified_name": STRING,
            "qualified_name": STRING,
            "description": _optional(STRING),
            "toolkit": {"type": "object", "required": ["name"], "properties": {"name": STRING}},
            "input": {"type": "object", "properties": {"parameters": {"type": "array"}}},
            "output": {"type": ["object", "null"]},
            "requirements": {"type": "object"},
            "formatted_schema": {"type": "object"},
        },
    },
    "ToolPage": page("ToolDefinition"),
    "FormattedTool": {
        "description": "An OpenAI function tool (format=openai) or an Anthropic tool (format=anthropic).",
        "anyOf": [
            {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name", "parameters"],
                        "properties": {
                            "name": STRING,
                            "description": STRING,
                            "parameters": {"type": "object"},
                        },
                    },
                },
            },
            {
                "type": "object",
                "required": ["name", "input_schema"],
                "properties": {"name": STRING, "description": STRING, "input_schema": {"type": "object"}},
            },
        ],
    },
    "FormattedToolPage": page("FormattedTool"),
    "ExecuteToolResponse": {
        "type": "object",
        "required": ["id", "execution_id", "execution_type", "finished_at", "duration", "status", "success"],
        "properties": {
            "id": STRING,
            "execution_id": STRING,
            "execution_type": STRING,
            "finished_at": STRING,
            "duration": {"type": "number", "minimum": 0},
            "status": {"enum": ["success", "failed"]},
            "success": {"type": "boolean"},
            "output": {
                "type": "object",
                "properties": {
                    "value": {},
                    "logs": {"type": "array"},
                    "authorization": ref("AuthorizationResponse"),
                    "error": {
                        "type": "object",
                        "required": ["message", "kind", "can_retry"],
                        "properties": {
                            "message": STRING,
                            "kind": STRING,
                            "can_retry": {"type": "boolean"},
                            "retry_after_ms": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
    "UserConnection": {
        "type": "object",
        "required": ["id", "connection_id", "connection_status", "provider_id", "user_id", "scopes"],
        "properties": {
            "id": STRING,
            "connection_id": STRING,
            "connection_status": {"type": "string", "description": "active, needs_reauth, revoked, ..."},
            "provider_id": STRING,
            "provider_type": STRING,
            "provider_description": _optional(STRING),
            "provider_user_info": {"type": "object"},
            "scopes": STRINGS,
            "user_id": STRING,
            "account": {"type": "string", "description": "Which of the user's accounts at the provider."},
            "is_default": {
                "type": "boolean",
                "description": "The account used when a call names none (chosen, else the first connected).",
            },
        },
    },
    "UserConnectionPage": page("UserConnection"),
    "RevocationResult": {
        "type": "object",
        "required": ["id", "provider_id", "outcome", "deleted", "revoked_at_provider"],
        "properties": {
            "id": STRING,
            "provider_id": STRING,
            "outcome": STRING,
            "deleted": {"type": "boolean"},
            "revoked_at_provider": {"type": "boolean"},
            "reason": STRING,
            "msg": STRING,
        },
    },
    "ApprovalDecision": {
        "type": "object",
        "required": ["decision"],
        "properties": {
            "decision": {"enum": ["approve", "deny"], "description": "approve or deny the held call"},
            "reason": {
                "type": ["string", "null"],
                "maxLength": 500,
                "description": "Why (shown to the agent).",
            },
        },
    },
    "Approval": {
        "type": "object",
        "required": [
            "id",
            "user_id",
            "tool_name",
            "inputs",
            "status",
            "approver",
            "url",
            "created_at",
            "expires_at",
        ],
        "properties": {
            "id": STRING,
            "user_id": STRING,
            "tool_name": STRING,
            "inputs": {"type": "object"},
            "status": {"enum": ["pending", "approved", "denied", "used", "expired"]},
            "approver": {"enum": ["user", "app"]},
            "url": STRING,
            "created_at": STRING,
            "expires_at": STRING,
            "decided_at": STRING,
            "reason": STRING,
        },
    },
    "ApprovalList": {
        "type": "object",
        "required": ["items", "total_count"],
        "properties": {
            "items": {"type": "array", "items": ref("Approval")},
            "total_count": {"type": "integer", "minimum": 0},
        },
    },
    "ConnectSession": {
        "type": "object",
        "required": ["id", "url", "expires_at"],
        "properties": {
            "id": STRING,
            "url": {
                "type": "string",
                "description": "The page to send the user to (its token is shown once).",
            },
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "Health": {"type": "object", "required": ["healthy"], "properties": {"healthy": {"type": "boolean"}}},
    "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
}
