"""End to end: Arcade's toolkits from PyPI (gmail, slack, github, google-calendar) served by arcade-serve."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from engine.tools.worker import worker_token

TOOLKITS = ("arcade_gmail", "arcade_slack", "arcade_github", "arcade_google_calendar")
GOOGLE = (
    "auth:\n  providers:\n    - {id: google, provider_id: google, client_id: google-cid, client_secret: gs}\n"
)
COMPANY = (
    "    - {id: company-google-calendar, provider_id: google, client_id: company-cid, client_secret: cs}\n"
)
GOOGLE_DEFAULTS = {"openid", "email", "profile"}  # the google template's default_scopes


async def worker_tools(worker: Any) -> list[dict[str, Any]]:
    """The worker's own /worker/tools, read with aiohttp's whole-body JSON reader."""
    headers = {"Authorization": f"Bearer {worker_token(worker.secret)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(worker.url + "/worker/tools", headers=headers) as resp,
    ):
        assert resp.status == 200
        tools: list[dict[str, Any]] = await resp.json()
        return tools


async def test_real_toolkits_listed_authorized_and_formatted(
    keyturn_engine: Any, toolkit_worker: Any
) -> None:
    """Every tool of the four toolkits is listed; Gmail.SendEmail authorizes with google; formats work."""
    worker = await toolkit_worker(*TOOLKITS)
    engine = await keyturn_engine(GOOGLE + worker.yaml())
    served = await worker_tools(worker)
    expected = {f"{t['toolkit']['name']}.{t['name']}" for t in served}
    assert (
        len(served) >= 70
        and {"Gmail.SendEmail", "Slack.SendMessage", "GoogleCalendar.ListEvents"} <= expected
    )

    status, page = await engine.api("GET", "/v1/tools?limit=1000")
    assert status == 200 and page["total_count"] == len(served)
    assert {t["qualified_name"] for t in page["items"]} == expected

    _, send = await engine.api("GET", "/v1/tools/Gmail.SendEmail")
    tool_scopes = send["requirements"]["authorization"]["oauth2"]["scopes"]
    assert tool_scopes == ["https://www.googleapis.com/auth/gmail.send"]
    status, flow = await engine.api(
        "POST", "/v1/tools/authorize", json={"tool_name": "Gmail.SendEmail", "user_id": "ann@example.com"}
    )
    assert status == 200 and flow["status"] == "pending" and flow["provider_id"] == "google"
    assert flow["url"] == f"{engine.url}/v1/oauth/start/{flow['id']}"
    assert set(flow["scopes"]) - GOOGLE_DEFAULTS == set(tool_scopes)
    stored = await engine.store.flows.get(flow["id"])
    assert stored.provider_id == "google" and set(stored.scopes) == set(flow["scopes"])

    status, openai = await engine.api("GET", "/v1/formatted_tools?format=openai&limit=1000")
    assert status == 200 and openai["total_count"] == len(served)
    names = [f["function"]["name"] for f in openai["items"]]
    assert len(set(names)) == len(served) and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names)
    assert all(
        f["type"] == "function" and f["function"]["parameters"]["type"] == "object" for f in openai["items"]
    )
    status, anthropic = await engine.api("GET", "/v1/formatted_tools?format=anthropic&limit=1000")
    assert status == 200 and anthropic["total_count"] == len(served)
    assert all(f["name"] in names and f["input_schema"]["type"] == "object" for f in anthropic["items"])
    _, one = await engine.api("GET", "/v1/formatted_tools/Gmail.SendEmail?format=anthropic")
    assert one["name"] == "Gmail_SendEmail" and "recipient" in one["input_schema"]["properties"]


async def test_explicit_provider_id_never_falls_back(keyturn_engine: Any, toolkit_worker: Any) -> None:
    """A tool declaring Google(id="company-google-calendar") needs that entry; the google one is not used."""
    worker = await toolkit_worker("arcade_gmail", company=True)
    engine = await keyturn_engine(GOOGLE + worker.yaml())
    company = {"tool_name": "Company.ListEvents", "user_id": "ann@example.com"}
    status, err = await engine.api("POST", "/v1/tools/authorize", json=company)
    assert status == 404 and err["error"] == "unknown_provider" and "'company-google-calendar'" in err["msg"]
    status, err = await engine.api(
        "POST", "/v1/tools/execute", json={**company, "input": {"day": "2026-01-05"}}
    )
    assert status == 404 and err["error"] == "unknown_provider"
    _, page = await engine.api("GET", "/v1/tools?limit=1000&user_id=ann@example.com")
    listed = next(t for t in page["items"] if t["qualified_name"] == "Company.ListEvents")
    assert listed["requirements"]["authorization"]["status"] == "inactive"

    await engine.reconfigure(GOOGLE + COMPANY + worker.yaml())
    status, flow = await engine.api("POST", "/v1/tools/authorize", json=company)
    assert status == 200 and flow["provider_id"] == "company-google-calendar"
    status, gmail = await engine.api(
        "POST", "/v1/tools/authorize", json={"tool_name": "Gmail.SendEmail", "user_id": "ann@example.com"}
    )
    assert status == 200 and gmail["provider_id"] == "google"  # a bare provider_id: the entry named google
