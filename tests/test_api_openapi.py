"""engine.api.openapi: /v1/openapi.json is written from the declared routes; schemathesis finds nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.api.schemas import SCHEMAS
from tests.plugins.keyturn_engine import API_KEY, KeyturnEngine
from tests.plugins.mini_provider import USER, MiniProvider, acme_config

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,no_token_in_response"
)
SECURITY = "api_keys: ['test-api-key-0123456789abcdef'], rate_limiting: {max_api_key_failures: 100000}"


@pytest.fixture
async def engine(keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any) -> KeyturnEngine:
    worker = await echo_worker(mini_provider.url("/userinfo"))
    return await keyturn_engine(acme_config(mini_provider, extra=worker.yaml(), security=SECURITY))


def _routes(engine: KeyturnEngine) -> set[tuple[str, str]]:
    """(method, path) of every /v1 and /api route the app serves, org-scoped aliases left out."""
    out = set()
    for route in engine.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method != "HEAD" and path.startswith(("/v1/", "/api/")) and "/orgs/" not in path:
            out.add((route.method.lower(), path))
    return out


async def test_document_covers_every_route(engine: KeyturnEngine) -> None:
    """Every /v1 route is in the document with its answers and the error object; /mcp is not."""
    status, doc = await engine.api("GET", "/v1/openapi.json", headers={"Authorization": ""})
    assert status == 200 and doc["openapi"] == "3.1.0"
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == _routes(engine)
    assert "/mcp" not in doc["paths"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["code", "error", "msg"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "default" in op["responses"] and op["operationId"], (method, path)
            if not path.startswith("/v1/oauth/") and path != "/v1/openapi.json":
                assert "400" in op["responses"] or method == "get", (method, path)
    authorize = doc["paths"]["/v1/auth/authorize"]["post"]
    assert authorize["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuthorizeRequest"
    }
    wait = next(p for p in doc["paths"]["/v1/auth/status"]["get"]["parameters"] if p["name"] == "wait")
    assert wait["schema"]["type"] == "number" and wait["schema"]["minimum"] == 0
    assert set(doc["components"]["schemas"]) == set(SCHEMAS)


async def _known_values(engine: KeyturnEngine) -> dict[str, list[str]]:
    """A real grant (so a response leaking its tokens is caught), a pending flow, and the names that
    reach past the 404s: schemathesis draws from these for ids, users, tools and providers."""
    body = {"user_id": USER, "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["read"]}}}
    status, done = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200, done
    async with engine.browser.get(done["url"]) as resp:
        assert resp.status == 200
    status, answer = await engine.api("GET", "/v1/auth/status", params={"id": done["id"]})
    assert answer["status"] == "completed"
    status, pending = await engine.api("POST", "/v1/auth/authorize", json={**body, "user_id": "bob"})
    assert pending["status"] == "pending"
    grant = await engine.store.grants.find(USER, "acme")
    return {
        "ids": [done["id"], pending["id"], grant.id],
        "users": [USER, "bob"],
        "tools": ["Echo.Say", "Echo.WhoAmI", "Echo_Secret"],
        "providers": ["acme"],
    }


BINDINGS = {
    "query.id": "ids",
    "path.id": "ids",
    "path.flow_id": "ids",
    "body.flow_id": "ids",
    "query.user_id": "users",
    "body.user_id": "users",
    "path.name": "tools",
    "body.tool_name": "tools",
    "path.provider": "providers",
    "query.provider_id": "providers",
    "body.auth_requirement.provider_id": "providers",
}


def _config(values: dict[str, list[str]]) -> str:
    """schemathesis.toml: dictionaries of the known values, drawn for the parameters that take them."""
    out = [f"[dictionaries.{name}]\nvalues = {json.dumps(items)}\n" for name, items in values.items()]
    out.append("[parameters]")
    out += [f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}' for key, name in BINDINGS.items()]
    return "\n".join(out) + "\n"


async def _schemathesis(engine: KeyturnEngine, config: Path, tokens: list[str], *only: str) -> str:
    """Run schemathesis's CLI against the engine; its output, after asserting it found nothing."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "KEYTURN_TOKENS": ",".join(tokens)}
    env["PYTHONPATH"] = str(ROOT)
    args = [
        *("--config-file", str(config), "run", f"{engine.url}/v1/openapi.json"),
        *("--header", f"Authorization: Bearer {API_KEY}", "--checks", CHECKS),
        *("--phases", "examples,coverage,fuzzing", "--seed", "1", "--workers", "1"),
        *("--max-examples", os.environ.get("KEYTURN_SCHEMATHESIS_EXAMPLES", "25")),
        *("--request-timeout", "30", "--no-color", *only),
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        *args,
        env=env,
        cwd=config.parent,  # schemathesis keeps its crash cache (.schemathesis/) in the working directory
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    summary = ""
    while line := (await asyncio.wait_for(proc.stdout.readline(), 180)).decode(errors="replace"):
        lines.append(line)
        if line.startswith("=====") and " in " in line and line.rstrip().endswith("="):
            summary = line  # the closing line ("== 2 warnings in 9.1s ==", "== 1 failed, ... ==")
            break
    text = "".join(lines)
    print(text)  # shown when the test fails
    try:
        code = await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:  # schemathesis now and then lingers after its summary: its verdict is in it
        proc.kill()
        await proc.wait()
        code = 1 if re.search(r"\b(failed|errors?|failures?)\b", summary) else 0
    assert summary and code == 0, text[-20000:]
    return text


@pytest.mark.timeout(240)
async def test_schemathesis_finds_nothing(
    engine: KeyturnEngine, mini_provider: MiniProvider, tmp_path: Path
) -> None:
    """schemathesis against the live engine: no 500, every answer matches its schema, no token in any
    (DELETE last, so the grant whose tokens are looked for lives through the other operations)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(await _known_values(engine)))
    assert mini_provider.issued
    first = await _schemathesis(engine, config, mini_provider.issued, "--exclude-method", "DELETE")
    last = await _schemathesis(engine, config, mini_provider.issued, "--include-method", "DELETE")
    for run in (first, last):  # every operation selected was tested (none skipped for want of data)
        selected = re.search(r"Selected: (\d+)/", run)
        assert selected and f"Tested: {selected.group(1)}\n" in run, run[-3000:]
    assert "Tested: 1\n" in last  # the one DELETE
