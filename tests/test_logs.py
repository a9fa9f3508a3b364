"""engine.logs: JSON log lines for structlog and stdlib loggers, and the Redactor."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from engine.logs import MASK, Redactor, configure_logging, looks_random

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaXNzIjoiaHR0cHM6Ly9hIn0"
    ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
RANDOM = "q9Xw2Lm4Np7Rt1Vy3Bc5Df8Gh0Jk"  # a generated-looking opaque token


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Leave no handler or structlog config behind for other tests."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_keyturn_handler", False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def redact(**fields: Any) -> dict[str, Any]:
    return Redactor()(None, "info", dict(fields))


# ---- configure_logging ------------------------------------------------------------------------
def test_structlog_line_is_one_json_object() -> None:
    """A structlog call comes out as one JSON line with timestamp, level, event and logger."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    structlog.get_logger("keyturn.test").info("something_happened", provider="github", n=3)
    [line] = lines(out)
    assert line["event"] == "something_happened"
    assert line["level"] == "info"
    assert line["logger"] == "keyturn.test"
    assert line["timestamp"].endswith("Z")
    assert (line["provider"], line["n"]) == ("github", 3)


def test_stdlib_logger_routed_through_same_format() -> None:
    """A stdlib logger (aiohttp's access log) produces the same JSON shape, with its message redacted."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("aiohttp.access").info("GET %s 200", "/v1/cb?code=abc123xyz&state=s1")
    [line] = lines(out)
    assert line["logger"] == "aiohttp.access"
    assert line["level"] == "info"
    assert "timestamp" in line
    assert line["event"] == f"GET /v1/cb?code={MASK}&state=s1 200"


def test_level_filters_and_reconfigure_replaces_handler() -> None:
    """Lines below the level are dropped; configuring twice leaves one handler, not two."""
    first = io.StringIO()
    configure_logging("info", "json", first)
    out = io.StringIO()
    configure_logging("warning", "json", out)
    log = structlog.get_logger("keyturn.test")
    log.info("dropped")
    log.warning("kept")
    logging.getLogger("other").info("dropped too")
    assert [line["event"] for line in lines(out)] == ["kept"]
    assert first.getvalue() == ""


def test_exception_traceback_is_redacted_in_both_formats() -> None:
    """A traceback is text in the line and the exception message inside it is redacted (json and console)."""
    for fmt in ("json", "console"):
        out = io.StringIO()
        configure_logging("info", fmt, out)
        try:
            raise ValueError(f"provider said {RANDOM} and ghp_abcdefghijklmnop1234")
        except ValueError:
            structlog.get_logger("t").exception("boom")
        text = out.getvalue()
        assert "ValueError" in text and "Traceback" in text
        assert RANDOM not in text and "ghp_abcdefghijklmnop1234" not in text


def test_exception_object_as_field_is_redacted() -> None:
    """An exception passed as a field value is rendered as text and redacted, not repr'd raw."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    structlog.get_logger("t").warning("failed", error=RuntimeError(f"Bearer {RANDOM}"))
    [line] = lines(out)
    assert line["error"] == f"RuntimeError: Bearer {MASK}"


def test_bad_level_and_format_are_refused() -> None:
    """An unknown level or format raises ValueError naming it."""
    with pytest.raises(ValueError, match="'loud'"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="'xml'"):
        configure_logging("info", "xml")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    """By default (auto) a pipe, file or journal gets JSON lines."""
    out = io.StringIO()
    configure_logging("info", stream=out)
    structlog.get_logger("keyturn.test").info("piped", provider="github")
    [line] = lines(out)
    assert line["event"] == "piped"


def test_auto_format_is_console_on_a_terminal() -> None:
    """On a terminal (a real pty) auto gives human-readable lines, still redacted; json overrides it."""
    main_fd, tty_fd = pty.openpty()
    try:
        with (
            open(tty_fd, "w", buffering=1, closefd=False) as tty,
            open(main_fd, "rb", 0, closefd=False) as main,
        ):
            assert tty.isatty()
            configure_logging("info", stream=tty)
            structlog.get_logger("keyturn.test").info("on_a_terminal", provider="github", token=RANDOM)
            text = main.read(4096).decode()
            assert "on_a_terminal" in text and "provider" in text and "github" in text
            assert not text.lstrip().startswith("{") and RANDOM not in text
            configure_logging("info", "json", stream=tty)
            structlog.get_logger("keyturn.test").info("forced_json")
            assert json.loads(main.read(4096).decode())["event"] == "forced_json"
    finally:
        os.close(main_fd)
        os.close(tty_fd)


def test_alembic_info_lines_are_quiet() -> None:
    """Alembic's INFO chatter is dropped; its warnings still come through."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
    logging.getLogger("alembic.runtime.migration").warning("something odd")
    assert [line["event"] for line in lines(out)] == ["something odd"]


def test_warn_is_accepted_as_arcade_spells_it() -> None:
    """Arcade's level word warn means warning."""
    out = io.StringIO()
    configure_logging("warn", "json", out)
    structlog.get_logger("t").info("dropped")
    structlog.get_logger("t").warning("kept")
    assert [line["event"] for line in lines(out)] == ["kept"]


# ---- Redactor ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    ["access_token", "refresh_token", "client_secret", "password", "code", "Authorization", "X-Api-Key",
     "set-cookie", "accessToken", "github_token", "webhook_secret"],
)  # fmt: skip
def test_secret_named_keys_are_masked(key: str) -> None:
    """A value under a secret-named key is masked whatever it looks like."""
    assert redact(**{key: "short"})[key] == MASK


def test_jwt_masked_alone_and_inside_text() -> None:
    """A JWT is masked as a whole value and inside a sentence."""
    out = redact(a=JWT, b=f"id token {JWT} rejected")
    assert out["a"] == MASK
    assert out["b"] == f"id token {MASK} rejected"


def test_bearer_and_basic_credentials_masked() -> None:
    """`Bearer x`/`Basic x` credentials are masked; the scheme word stays."""
    out = redact(msg="sent Bearer abcdefgh1234 and Basic dXNlcjpwYXNz")
    assert out["msg"] == f"sent Bearer {MASK} and Basic {MASK}"


def test_prose_after_scheme_words_is_kept() -> None:
    """`token expired` and `basic settings` are prose, not credentials."""
    out = redact(msg="access token expired; basic settings kept")
    assert out["msg"] == "access token expired; basic settings kept"


def test_token_parameters_in_urls_masked() -> None:
    """access_token=, code=, refresh_token= in a URL (query or fragment) are masked; other params stay."""
    out = redact(url="https://app.example/cb?code=abc&state=s1#access_token=zz&refresh_token=yy&x=1")
    assert (
        out["url"]
        == f"https://app.example/cb?code={MASK}&state=s1#access_token={MASK}&refresh_token={MASK}&x=1"
    )


def test_json_members_in_text_masked() -> None:
    """A token response body quoted in a message has its secret members masked."""
    out = redact(body='{"access_token": "abc", "token_type": "bearer", "refresh_token":"d\\"e"}')
    assert out["body"] == f'{{"access_token": "{MASK}", "token_type": "bearer", "refresh_token":"{MASK}"}}'


@pytest.mark.parametrize(
    "token",
    ["ghp_abcdefghijklmnop1234", "github_pat_11ABCDEFG0123456789_abc", "xoxb-1234567890-abcdefghij",
     "kt_live_abcdefghijklmnop", "sk-proj-abcdefghijklmnop", "ya29.a0AfH6SMBx-abcdefghij",
     "glpat-abcdefghijklmnop12"],
)  # fmt: skip
def test_known_token_prefixes_masked(token: str) -> None:
    """Tokens with a well-known prefix are masked even under a safe key."""
    assert redact(note=f"got {token} back", provider=token) == {"note": f"got {MASK} back", "provider": MASK}


def test_high_entropy_strings_masked() -> None:
    """A long random-looking string is masked, alone, in text, and as a path segment."""
    out = redact(a=RANDOM, b=f"opaque {RANDOM}.", c=f"/v1/things/{RANDOM}/x")
    assert out == {"a": MASK, "b": f"opaque {MASK}.", "c": f"/v1/things/{MASK}/x"}


def test_nested_structures_are_walked() -> None:
    """Dicts and lists inside fields are redacted recursively, keys kept."""
    out = redact(
        headers={"Authorization": "Bearer x", "Accept": "application/json"}, items=[{"password": "p"}, RANDOM]
    )
    assert out == {
        "headers": {"Authorization": MASK, "Accept": "application/json"},
        "items": [{"password": MASK}, MASK],
    }


def test_identifiers_and_names_left_alone() -> None:
    """Request ids, provider names, user refs, routes, dotted names and numbers are not touched."""
    fields: dict[str, Any] = {
        "request_id": "4f9a1c2be3d04a5f9e8d7c6b",
        "flow_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "user_ref": "a3" * 32,
        "provider": "google",
        "route": "/v1/auth/status",
        "logger": "apscheduler.executors.defaults",
        "host": "login.microsoftonline.com",
        "content_type": "text/html; charset=utf-8",
        "status": 502,
        "duration": 0.25,
        "ok": True,
        "event": "grant.refresh_failed",
        "msg": "Connection refused by api.github.com:443 after 3 attempts",
        "class_name": "engine.lifecycle.refresh.RefreshScheduler",
    }
    assert redact(**fields) == fields


def test_bytes_are_masked_and_objects_judged_as_text() -> None:
    """Raw bytes are masked; other objects are judged by their text form."""

    class Holder:
        def __str__(self) -> str:
            return f"Holder(Bearer {RANDOM})"

    out = redact(raw=b"abc", obj=Holder())
    assert out == {"raw": MASK, "obj": f"Holder(Bearer {MASK})"}


def test_entropy_guess_can_be_turned_off() -> None:
    """With entropy=False only the strong patterns apply."""
    out = Redactor(entropy=False)(None, "info", {"a": RANDOM, "b": f"Bearer {RANDOM}"})
    assert out == {"a": RANDOM, "b": f"Bearer {MASK}"}


def test_looks_random_rejects_words_numbers_and_camel_case() -> None:
    """Words, numbers and camelCase identifiers are not called random; generated keys are."""
    assert not looks_random("12345678901234567890123")
    assert not looks_random("averyveryverylongordinaryword")
    assert not looks_random("ThisIsACamelCaseIdentifierName")
    assert looks_random(RANDOM)
