"""Application logs: structlog JSON lines (or a console view), with stdlib logging routed through it.

``configure_logging(level, fmt)`` sets up one format for everything: structlog loggers and the
stdlib loggers of aiohttp (access log), SQLAlchemy, Alembic and APScheduler go through the same
processors and come out as one JSON object per line with ``timestamp``, ``level``, ``event`` and
``logger`` (``fmt="json"``), as human-readable lines (``"console"``), or, with ``"auto"`` (the
default), console lines when the stream is a terminal and JSON otherwise. Audit records are not log
lines: their sinks (``engine.audit.sinks``) always write JSON.

:class:`Redactor` is the last line of defence against a secret in a log line: it masks the
values of secret-named keys (``access_token``, ``client_secret``, ``password`` ...) and any value
that looks like a credential (a JWT, ``Bearer ...``, ``access_token=...`` in a URL, known token
prefixes, long high-entropy strings). The audit pipeline (``engine.audit``) uses it too.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "[redacted]"

# Keys whose values are always secrets (compared lower-case, "-" read as "_").
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "code_verifier",
        "verifier",
        "client_secret",
        "secret",
        "password",
        "passwd",
        "api_key",
        "apikey",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "root_key",
        "private_key",
        "assertion",
        "client_assertion",
    }
)
SECRET_SUFFIXES = ("_token", "_secret", "_password", "_verifier", "_api_key")

# Keys whose values are ours and never secrets: only the strong patterns apply to them, not the
# entropy guess (a request id or a user reference is a random-looking hex string on purpose).
SAFE_KEYS = frozenset(
    {
        "level",
        "logger",
        "timestamp",
        "time",
        "user_ref",
        "outcome",
        "provider",
        "tool",
        "route",
        "method",
        "status",
        "source_ip",
        "client_id",
        "kid",
        "key_id",
        "sub_ref",
    }
)

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_JWT_WHOLE = re.compile(r"^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}$")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=-]{6,})")
_PLAIN_WORD = re.compile(r"^[A-Za-z][a-z]*$")  # "expired", "Refreshed": prose, not a credential
_PARAM = re.compile(
    r"(?i)\b(access_token|refresh_token|id_token|code|code_verifier|client_secret|token|password|api_key"
    r"|assertion|client_assertion)=([^&\s\"']+)"
)
# the same names as JSON members in a body quoted into a message: "access_token": "..."
_JSON_MEMBER = re.compile(
    r"(?i)(\"(?:access_token|refresh_token|id_token|code|code_verifier|client_secret|token|password|api_key"
    r"|assertion|client_assertion)\"\s*:\s*\")((?:[^\"\\]|\\.)*)(\")"
)
_PREFIXED = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}|xox[abprse]-[A-Za-z0-9-]{10,}"
    r"|kt_[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{16,}|ya29\.[A-Za-z0-9_.-]{10,}|glpat-[A-Za-z0-9_-]{16,})"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_RUN = re.compile(r"[A-Za-z0-9_\-+/=.~]{20,}")


def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(text: str, min_length: int = 20) -> bool:
    """Whether ``text`` (one run with no separators) looks like a generated credential."""
    core = text.strip("=.-_/")
    if len(core) < min_length:
        return False
    lower = any(c.islower() for c in core)
    upper = any(c.isupper() for c in core)
    digit = any(c.isdigit() for c in core)
    if not (lower or upper):
        return False  # a number, not a key
    if digit and (lower or upper):
        return _entropy(core) >= 3.0
    if lower and upper:  # random case mix, not camelCase words (few capitals)
        letters = [c for c in core if c.isalpha()]
        upper_share = sum(c.isupper() for c in letters) / len(letters)
        return 0.3 <= upper_share <= 0.7 and _entropy(core) >= 3.5
    return False


def _mask_run(match: re.Match[str]) -> str:
    whole = match.group(0)
    run = whole.rstrip(".")
    tail = whole[len(run) :]  # a sentence's full stop is not part of the token
    if run.startswith("/"):  # a path: judge each segment alone
        return "/".join(_mask_dotted(part) for part in run.split("/")) + tail
    return _mask_dotted(run) + tail


def _mask_dotted(run: str) -> str:
    if looks_random(run):
        return MASK
    if "." in run:  # a dotted name (module.Class, host.name): judge each part alone
        return ".".join(MASK if looks_random(part) else part for part in run.split("."))
    return run


class Redactor:
    """A processor that masks secrets in an event dict, recursively (dicts, lists, tuples).

    ``secret_keys``/``secret_suffixes`` name keys always masked; ``safe_keys`` (and keys ending in
    ``_id``) skip the entropy guess but still get the pattern checks; ``entropy`` turns the
    guess off entirely.
    """

    def __init__(
        self,
        *,
        secret_keys: Iterable[str] = SECRET_KEYS,
        secret_suffixes: tuple[str, ...] = SECRET_SUFFIXES,
        safe_keys: Iterable[str] = SAFE_KEYS,
        entropy: bool = True,
        mask: str = MASK,
    ) -> None:
        self.secret_keys = frozenset(k.lower() for k in secret_keys)
        self.secret_suffixes = secret_suffixes
        self.safe_keys = frozenset(k.lower() for k in safe_keys)
        self.entropy = entropy
        self.mask = mask

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            event_dict[key] = self.value(key, event_dict[key])
        return event_dict

    def secret_key(self, key: str) -> bool:
        k = _CAMEL.sub(r"_\1", key).lower().replace("-", "_")  # accessToken -> access_token
        return k in self.secret_keys or k.endswith(self.secret_suffixes)

    def value(self, key: str, value: Any) -> Any:
        """``value`` as it may be logged under ``key``."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if self.secret_key(key):
            return self.mask
        k = key.lower()
        guess = self.entropy and k not in self.safe_keys and not k.endswith("_id")
        if isinstance(value, str):
            return self.text(value, guess=guess)
        if isinstance(value, Mapping):
            return {mk: self.value(str(mk), v) for mk, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(key, v) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.mask  # raw bytes in a log line are never wanted
        if isinstance(value, BaseException):  # rendered with repr() otherwise, unredacted
            return self.text(f"{type(value).__name__}: {value}")
        # any other object would be rendered with repr()/str() after this processor: judge that text
        return self.text(str(value), guess=guess)

    def text(self, value: str, *, guess: bool = True) -> str:
        """``value`` with every credential-looking part masked."""
        if _JWT_WHOLE.match(value) and looks_random(value.replace(".", "")):
            return self.mask  # three dot-separated random parts; not a dotted name like a.b.c
        out = _JWT.sub(self.mask, value)
        out = _AUTH_SCHEME.sub(self._scheme, out)
        out = _PARAM.sub(lambda m: f"{m.group(1)}={self.mask}", out)
        out = _JSON_MEMBER.sub(lambda m: f"{m.group(1)}{self.mask}{m.group(3)}", out)
        out = _PREFIXED.sub(self.mask, out)
        if guess:
            out = _RUN.sub(_mask_run, out)
        return out

    def _scheme(self, match: re.Match[str]) -> str:
        scheme, space, credential = match.groups()
        if scheme.lower() != "bearer" and _PLAIN_WORD.match(credential):
            return match.group(0)  # "token expired", "basic settings"
        return f"{scheme}{space}{self.mask}"


# ---- configuration ---------------------------------------------------------------------------
_HANDLER_MARK = "_keyturn_handler"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,  # Arcade's telemetry.logging.level spelling
    "error": logging.ERROR,
}
LogFormat = Literal["auto", "json", "console"]
# Chatty libraries: their INFO lines are noise in an engine log (Alembic prints a dozen on every start;
# engine.store.schema logs one line of its own when it migrates).
_QUIET = {
    "sqlalchemy.engine": logging.WARNING,
    "apscheduler": logging.WARNING,
    "asyncio": logging.WARNING,
    "alembic": logging.WARNING,
}


def shared_processors() -> list[Processor]:
    """The processors both structlog and stdlib records pass through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def resolve_format(fmt: LogFormat | str, stream: TextIO) -> Literal["json", "console"]:
    """``auto``: console lines for a person at a terminal, JSON for a log collector (pipe, file, journal)."""
    if fmt == "auto":
        return "console" if _is_terminal(stream) else "json"
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}; expected auto, json or console")
    return "json" if fmt == "json" else "console"


def configure_logging(
    level: str = "info", fmt: LogFormat | str = "auto", stream: TextIO | None = None
) -> None:
    """Send every log line (structlog and stdlib) to ``stream`` (default: ``sys.stdout``) as ``fmt``.

    Calling it again replaces the previous setup (tests call it freely).
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else sys.stdout
    chosen = resolve_format(fmt, out)
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=_is_terminal(out) and not os.environ.get("NO_COLOR"))
    )
    # tracebacks become text before the Redactor sees them, in both formats (a console traceback
    # rendered after it would carry an exception message unredacted)
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        Redactor(),
        renderer,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=final,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
