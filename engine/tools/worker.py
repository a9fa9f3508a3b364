"""The Arcade worker protocol, client side: ``/worker/tools``, ``/worker/tools/invoke``, ``/worker/health``.

Every call carries ``Authorization: Bearer <JWT>``: HS256 with the worker's secret, ``aud: "worker"``,
``ver: "1"`` and a short expiry, as ``arcade-serve`` checks it.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import aiohttp
from joserfc import jwt
from joserfc.jwk import OctKey

from engine import jsontext
from engine.errors import ProviderError, Unavailable
from engine.httpbody import BodyTooLarge, read_body

TOKEN_TTL = 60
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a worker's answer (/worker/tools of 77 tools is ~400 KB)


def worker_token(secret: str, *, now: float | None = None) -> str:
    """The bearer JWT for one worker call."""
    issued = int(now if now is not None else time.time())
    claims = {"aud": "worker", "ver": "1", "iat": issued, "exp": issued + TOKEN_TTL}
    with (
        warnings.catch_warnings()
    ):  # the worker's secret length is the operator's choice; arcade-serve accepts it
        warnings.simplefilter("ignore")
        key = OctKey.import_key(secret)
        return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, key)


@dataclasses.dataclass
class WorkerClient:
    session: aiohttp.ClientSession
    worker_id: str
    uri: str
    secret: str | None
    timeout: float = 30.0

    _token: tuple[float, str] | None = dataclasses.field(default=None, repr=False)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.secret:
            now = time.time()
            if self._token is None or self._token[0] < now:
                # signed once and reused until half its lifetime has passed
                self._token = (now + TOKEN_TTL / 2, worker_token(self.secret, now=now))
            headers["Authorization"] = f"Bearer {self._token[1]}"
        return headers

    async def _call(self, method: str, path: str, body: Any = None, *, limit_s: float | None = None) -> Any:
        url = self.uri.rstrip("/") + path
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                headers=self._headers(),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=limit_s or self.timeout),
            ) as resp:
                try:
                    raw = await read_body(
                        resp.content,
                        MAX_ANSWER_BYTES,
                        length=resp.content_length,
                        what=f"worker {self.worker_id}: the answer to {path}",
                    )
                except BodyTooLarge as exc:
                    raise ProviderError(str(exc), kind="worker_error") from None
                if resp.status in (401, 403):
                    raise ProviderError(
                        f"worker {self.worker_id} refused the engine's token (HTTP {resp.status}): "
                        "check that workers[].secret matches the worker's ARCADE_WORKER_SECRET",
                        kind="worker_auth",
                    )
                if resp.status >= 400:
                    raise ProviderError(
                        f"worker {self.worker_id} answered HTTP {resp.status} on {path}",
                        kind="worker_error",
                        retryable=resp.status >= 500,
                    )
                try:
                    return jsontext.parse_peer(raw) if raw else None
                except ValueError:
                    raise ProviderError(
                        f"worker {self.worker_id}: {path} did not answer JSON", kind="worker_error"
                    ) from None
        except TimeoutError:
            raise Unavailable(
                f"worker {self.worker_id} did not answer {path} in time", retry_after=1
            ) from None
        except aiohttp.ClientError as exc:
            raise Unavailable(
                f"worker {self.worker_id} cannot be reached ({type(exc).__name__})", retry_after=1
            ) from None

    async def list_tools(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/worker/tools", limit_s=min(self.timeout, 15))
        if not isinstance(data, list):
            raise ProviderError(f"worker {self.worker_id}: /worker/tools is not a list", kind="worker_error")
        return [t for t in data if isinstance(t, dict)]

    async def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        data = await self._call("POST", "/worker/tools/invoke", request)
        if not isinstance(data, dict):
            raise ProviderError(
                f"worker {self.worker_id}: invoke answer is not an object", kind="worker_error"
            )
        return data

    async def health(self) -> bool:
        try:
            await self._call("GET", "/worker/health", limit_s=5)
        except (ProviderError, Unavailable):
            return False
        return True
