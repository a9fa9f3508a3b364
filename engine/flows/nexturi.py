"""``next_uri`` is honoured only when it matches ``security.next_uri_allowlist`` (no open redirect)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

from engine.errors import BadRequest

MAX_LENGTH = 2048


def _split(url: str) -> SplitResult:
    """``urlsplit`` with the port parsed (ValueError for ``:99999``, ``:abc``, ``[::1``)."""
    parts = urlsplit(url)
    _ = parts.port
    return parts


def _norm(parts: SplitResult) -> tuple[str, str, int | None, str]:
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80 if scheme == "http" else None)
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def malformed(next_uri: str) -> str | None:
    """Why ``next_uri`` is not a URL we could redirect to (None when it is well formed)."""
    if len(next_uri) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in next_uri):
        return "it holds a space, a backslash or a control character"
    try:
        _split(next_uri)
    except ValueError as exc:
        return "its port is not a number from 0 to 65535" if "Port" in str(exc) else "its host is malformed"
    return None


def next_uri_allowed(next_uri: str, allowlist: Sequence[str]) -> bool:
    """True when ``next_uri`` has the scheme, host and port of an entry and lies under its path."""
    if malformed(next_uri) is not None:
        return False
    parts = _split(next_uri)
    if "@" in parts.netloc:
        return False
    scheme, host, port, path = _norm(parts)
    if scheme not in ("http", "https") or not host:
        return False
    for entry in allowlist:
        try:
            e_scheme, e_host, e_port, e_path = _norm(_split(entry))
        except ValueError:
            continue
        if (scheme, host, port) != (e_scheme, e_host, e_port):
            continue
        if e_path == "/" or path == e_path or path.startswith(e_path.rstrip("/") + "/"):
            return True
    return False


def check_next_uri(next_uri: str | None, allowlist: Sequence[str]) -> str | None:
    if next_uri is None or next_uri == "":
        return None
    reason = malformed(next_uri)
    if reason is not None:
        raise BadRequest(f"next_uri is not a valid URL: {reason}")
    if not next_uri_allowed(next_uri, allowlist):
        raise BadRequest(
            "next_uri is not in security.next_uri_allowlist; add its origin (and path prefix) there",
            error="next_uri_not_allowed",
        )
    return next_uri
