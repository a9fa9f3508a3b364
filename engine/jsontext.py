"""JSON text from outside, parsed safely: requests strictly (RFC 8259, bounded), peer answers leniently.

orjson refuses what the standard library lets through and later trips over: nesting deeper than 1,024
levels (``json`` raises RecursionError), numbers beyond a double (``json`` builds a 5,000-digit int that
``str()`` then refuses), ``NaN``/``Infinity`` literals, lone surrogates and invalid UTF-8. Every refusal is
a :class:`JsonTextError` whose message names the problem and where, never the text.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 1024  # orjson's fixed limit


class JsonTextError(ValueError):
    """The text is not one JSON value we accept; ``reason`` says why (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse(raw: bytes | str) -> Any:
    """The JSON value in ``raw``, or :class:`JsonTextError`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JsonTextError(_reason(exc)) from None


def parse_peer(raw: bytes | str) -> Any:
    """A peer's answer (provider, worker, upstream MCP server), parsed as leniently as ``json`` does.

    Peers written in Python send ``NaN`` for a float that is not a number; refusing the whole answer would
    lose what else it carries (a rotated refresh token). Only what ``json`` cannot survive is refused:
    nesting deep enough to exhaust the stack, and integers past Python's digit limit.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise JsonTextError("nested too deeply") from None
    except ValueError as exc:
        raise JsonTextError(str(exc).split(":")[0]) from None


def _reason(exc: orjson.JSONDecodeError) -> str:
    msg = exc.msg
    if msg.startswith("depth limit exceeded"):
        msg = f"nested deeper than {MAX_DEPTH} levels"
    elif msg.startswith("number is infinity"):
        msg = "a number is too large"
    return f"{msg} at line {exc.lineno} column {exc.colno}"
