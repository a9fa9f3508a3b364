"""What the sign-in pages share: cookie names and flags, CSRF tokens, and where ``next`` may lead.

Cookies are ``__Host-`` prefixed, ``Secure``, ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` (browsers
accept Secure cookies on loopback); only a development ``api.public_url`` on plain http off loopback
uses the bare names without ``Secure`` (a browser would drop them otherwise).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from urllib.parse import unquote, urlsplit

from aiohttp import web

from engine.net import is_loopback_host

SESSION = "keyturn_session"  # the signed-in browser's random session id
LOGIN = "keyturn_login"  # binds a sign-in's state to the browser that started it
VERIFY = "keyturn_verify"  # binds a flow waiting for verification to the browser that came back with it
DEFAULT_NEXT = "/connections"
MAX_NEXT = 1024


@dataclasses.dataclass(frozen=True)
class CookiePolicy:
    secure: bool

    @classmethod
    def for_url(cls, public_url: str) -> CookiePolicy:
        parts = urlsplit(public_url)
        return cls(secure=parts.scheme == "https" or is_loopback_host(parts.hostname))

    def name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    def get(self, request: web.Request, base: str) -> str | None:
        return request.cookies.get(self.name(base))

    def set(self, response: web.StreamResponse, base: str, value: str, *, max_age: float) -> None:
        response.set_cookie(
            self.name(base),
            value,
            max_age=max(int(max_age), 1),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: web.StreamResponse, base: str) -> None:
        response.del_cookie(self.name(base), path="/", secure=self.secure, httponly=True, samesite="Lax")


def csrf_token(session_token: str) -> str:
    """The form token of a session: an HMAC of its (secret) id, so it differs per session."""
    mac = hmac.new(session_token.encode("utf-8"), b"keyturn csrf v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def csrf_ok(session_token: str, presented: object) -> bool:
    if not isinstance(presented, str) or not presented or len(presented) > 128:
        return False
    return secrets.compare_digest(csrf_token(session_token).encode(), presented.encode())


def binding(key: bytes, flow_id: str) -> str:
    """The value of the verify cookie for ``flow_id`` (an HMAC under the installation's binding key)."""
    mac = hmac.new(key, f"verify:{flow_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def safe_next(value: str | None) -> str:
    """``value`` when it is a path of this engine (``/connections``, ``/login/verify?flow_id=...``).

    Anything else — an absolute URL, ``//host``, ``/\\host``, a scheme, control characters, an
    encoded slash or backslash that a browser may decode into one — gives :data:`DEFAULT_NEXT`.
    """
    if not value or len(value) > MAX_NEXT or not value.startswith("/"):
        return DEFAULT_NEXT
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in value):
        return DEFAULT_NEXT
    decoded = unquote(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in decoded):
        return DEFAULT_NEXT
    if value.startswith("//") or decoded.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.fragment:
        return DEFAULT_NEXT
    return value
