"""``next_uri`` is honoured only when it matches ``security.next_uri_allowlist`` (no open redirect)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from engine.errors import BadRequest


def _norm(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80 if scheme == "http" else None)
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def next_uri_allowed(next_uri: str, allowlist: Sequence[str]) -> bool:
    """True when ``next_uri`` has the scheme, host and port of an entry and lies under its path."""
    if any(c in next_uri for c in ("\\", "\r", "\n", "\t")) or "@" in urlsplit(next_uri).netloc:
        return False
    scheme, host, port, path = _norm(next_uri)
    if scheme not in ("http", "https") or not host:
        return False
    for entry in allowlist:
        e_scheme, e_host, e_port, e_path = _norm(entry)
        if (scheme, host, port) != (e_scheme, e_host, e_port):
            continue
        if e_path == "/" or path == e_path or path.startswith(e_path.rstrip("/") + "/"):
            return True
    return False


def check_next_uri(next_uri: str | None, allowlist: Sequence[str]) -> str | None:
    if next_uri is None or next_uri == "":
        return None
    if not next_uri_allowed(next_uri, allowlist):
        raise BadRequest(
            "next_uri is not in security.next_uri_allowlist; add its origin (and path prefix) there",
            error="next_uri_not_allowed",
        )
    return next_uri
