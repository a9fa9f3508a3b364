"""After the whole suite: no token a test provider issued may appear in a database file or a captured log.

Fake providers call :func:`remember` for every token they issue. Every test's captured stdout,
stderr and log records are kept; at the end of the session every SQLite file under pytest's base
temporary directory and all captured output are scanned for each remembered token. A hit fails
the run and names where the token was found (never the token itself).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

ISSUED: set[str] = set()
_CAPTURED: list[tuple[str, str]] = []  # (test id, text)


def remember(token: str) -> str:
    if len(token) >= 12:
        ISSUED.add(token)
    return token


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    text = "\n".join(content for _name, content in report.sections)
    if text:
        _CAPTURED.append((report.nodeid, text))


def _scan() -> list[str]:
    if not ISSUED:
        return []
    found: list[str] = []
    tokens = [t.encode() for t in ISSUED]
    for nodeid, text in _CAPTURED:
        data = text.encode()
        if any(t in data for t in tokens):
            found.append(f"captured output of {nodeid}")
    return found


def _scan_files(base: Path) -> list[str]:
    tokens = [t.encode() for t in ISSUED]
    found = []
    for path in base.rglob("*"):
        if not path.is_file() or not (
            path.suffix in (".db", ".log", ".jsonl") or path.name.endswith(("-wal", "-shm"))
        ):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if any(t in data for t in tokens):
            found.append(str(path))
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ISSUED or session.config.getoption("collectonly"):
        return
    found = _scan()
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        with contextlib.suppress(OSError):
            found += _scan_files(factory.getbasetemp())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        if reporter is not None:
            reporter.write_line(f"token scan: {len(ISSUED)} issued tokens; FOUND in:", red=True)
            for where in found:
                reporter.write_line(f"  {where}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"token scan: none of {len(ISSUED)} issued tokens in databases or captured logs")
