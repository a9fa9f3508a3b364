"""Providers of ``type: api_key``: a service that takes an API key the person enters, not OAuth.

```yaml
- id: acme-keys
  type: api_key
  description: Acme API
  fields: [{name: api_key, label: "Acme API key", secret: true, pattern: "^ak_[A-Za-z0-9]{20,}$"}]
  check: {endpoint: "https://api.acme.example/v1/me", method: GET, header: Authorization, prefix: "Bearer "}
```

Exactly one field is ``secret``: its value is the credential, sealed like an access token and handed
to tools as ``context.authorization.token``. Other fields (an account subdomain) are kept with the
grant's user info. ``check`` (optional) sends the key to the service once before it is stored: a 2xx
answer accepts it, 401/403 refuses it, anything else is "cannot check now".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.config.convert import Context, field_line, from_data, node_line
from engine.config.model import ProviderConfig
from engine.providers.model import Provider
from engine.providers.schema import ApiKeySpec, OAuth2Spec

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")


def resolve_api_key(entry: ProviderConfig, raw: Mapping[str, Any], path: str, ctx: Context) -> Provider:
    """The :class:`Provider` of a ``type: api_key`` entry (no OAuth endpoints, no client)."""
    line = node_line(raw)
    if entry.oauth2 is not None or entry.provider_id or entry.client_id:
        raise ctx.error("an api_key provider has no oauth2 block, provider_id or client_id", path, line)
    if not entry.fields:
        raise ctx.error("is required for type api_key (the fields the person enters)", f"{path}.fields", line)
    spec = from_data(ApiKeySpec, {"fields": list(entry.fields), "check": entry.check}, path=path, ctx=ctx)
    fields_line = field_line(raw, "fields") or line
    names = [f.name for f in spec.fields]
    for i, f in enumerate(spec.fields):
        if not _NAME.fullmatch(f.name):
            raise ctx.error(
                "must be a letter then letters, digits or _", f"{path}.fields[{i}].name", fields_line
            )
        if f.pattern is not None:
            try:
                re.compile(f.pattern)
            except re.error as exc:
                raise ctx.error(
                    f"is not a regular expression: {exc}", f"{path}.fields[{i}].pattern", fields_line
                ) from None
    if len(set(names)) != len(names):
        raise ctx.error("field names must be unique", f"{path}.fields", fields_line)
    if sum(f.secret for f in spec.fields) != 1:
        raise ctx.error("exactly one field must be secret: true (the key)", f"{path}.fields", fields_line)
    if spec.check is not None:
        check_line = field_line(raw, "check") or line
        if not spec.check.endpoint.startswith(("https://", "http://")):
            raise ctx.error("must be an http(s) URL", f"{path}.check.endpoint", check_line)
        if not _HEADER.fullmatch(spec.check.header):
            raise ctx.error("must be a header name", f"{path}.check.header", check_line)
    return Provider(
        id=entry.id,
        template_id=None,
        client_id="",
        client_secret=None,
        oauth2=OAuth2Spec(),
        description=entry.description,
        type="api_key",
        api_key=spec,
    )
