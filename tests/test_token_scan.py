"""tests/plugins/token_scan: the end-of-suite scan catches a leaked token and passes a clean run."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", ROOT)


def test_leak_in_output_fails_the_run(pytester: pytest.Pytester) -> None:
    """A test that prints a remembered token makes the session fail and names the test."""
    pytester.makepyfile(
        """
        from tests.plugins.token_scan import remember

        def test_leaky():
            print("oops", remember("tok-LEAKED-0123456789abcdef"))
        """
    )
    result = pytester.runpytest_subprocess("-p", "tests.plugins.token_scan", "-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*token scan*FOUND*", "*captured output of*test_leaky*"])
    assert "tok-LEAKED-0123456789abcdef" not in "\n".join(
        line for line in result.stdout.lines if "FOUND" in line
    )


def test_leak_in_database_file_fails_the_run(pytester: pytest.Pytester) -> None:
    """A token written in clear to a .db file under the test temp dir is found."""
    pytester.makepyfile(
        """
        from tests.plugins.token_scan import remember

        def test_writes(tmp_path):
            (tmp_path / "x.db").write_bytes(remember("tok-IN-DB-0123456789abcdef").encode())
        """
    )
    result = pytester.runpytest_subprocess("-p", "tests.plugins.token_scan", "-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*FOUND*", "*x.db*"])


def test_clean_run_passes(pytester: pytest.Pytester) -> None:
    """A run that never shows its tokens passes and says so."""
    pytester.makepyfile(
        """
        from tests.plugins.token_scan import remember

        def test_clean():
            remember("tok-CLEAN-0123456789abcdef")
        """
    )
    result = pytester.runpytest_subprocess("-p", "tests.plugins.token_scan", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*token scan: none of 1 issued tokens*"])
