"""The baseline: an aiohttp hello-world app answering a small JSON object (python bench/hello.py PORT)."""

from __future__ import annotations

import sys

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"id": request.query.get("id", ""), "status": "completed"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
