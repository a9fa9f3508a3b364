"""A token endpoint with fixed latency for bench/refresh (python bench/fake_provider.py PORT LATENCY_MS).

POST /token (grant_type=refresh_token) answers a new access token after LATENCY_MS; GET /count says
how many refresh calls arrived, how many presented a refresh token already seen (duplicates) and how many
were refused (errors: not a refresh_token grant, or no refresh token).
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from aiohttp import web

seen: set[str] = set()
stats = {"calls": 0, "duplicates": 0, "errors": 0}


async def token(request: web.Request) -> web.Response:
    form = await request.post()
    stats["calls"] += 1
    presented = str(form.get("refresh_token", ""))
    if form.get("grant_type") != "refresh_token" or not presented:
        stats["errors"] += 1
        return web.json_response({"error": "invalid_request"}, status=400)
    if presented in seen:
        stats["duplicates"] += 1
    seen.add(presented)
    await asyncio.sleep(float(sys.argv[2]) / 1000)
    return web.json_response(
        {"access_token": secrets.token_urlsafe(24), "expires_in": 3600, "token_type": "Bearer"}
    )


async def count(request: web.Request) -> web.Response:
    return web.json_response(stats)


def main() -> None:
    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
