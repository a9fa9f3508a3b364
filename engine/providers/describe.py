"""Plain-data views of providers and templates for the CLI, secrets masked."""

from __future__ import annotations

from typing import Any

from engine.config.convert import to_data
from engine.providers.catalog import Template
from engine.providers.model import Provider

MASK = "********"


def describe_provider(provider: Provider) -> dict[str, Any]:
    if provider.api_key is not None:
        return {"id": provider.id, "type": "api_key", **to_data(provider.api_key)}
    return {
        "id": provider.id,
        "template": provider.template_id,
        "client_id": provider.client_id,
        "client_secret": MASK if provider.client_secret else None,
        "oauth2": to_data(provider.oauth2, mask_secrets=True),
    }


def describe_template(template: Template) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "docs": template.docs,
        "vars": dict(template.vars),
        "oauth2": to_data(template.oauth2),
    }
