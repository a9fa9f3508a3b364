"""engine.cli.cmd_audit: `keyturn audit hash USER` prints the user_ref for the installation salt."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.audit import user_ref
from engine.cli.main import main

SALT = bytes(range(32))


def test_hash_with_salt_from_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The salt from KEYTURN_AUDIT_SALT gives the same user_ref the audit records carry."""
    monkeypatch.setenv("KEYTURN_AUDIT_SALT", SALT.hex())
    assert main(["audit", "hash", "alice@example.com"]) == 0
    assert capsys.readouterr().out.strip() == user_ref(SALT, "alice@example.com")


def test_hash_with_salt_file_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--salt-file is used even when the environment variable is set."""
    monkeypatch.setenv("KEYTURN_AUDIT_SALT", "ff" * 32)
    salt_file = tmp_path / "salt"
    salt_file.write_text(SALT.hex() + "\n")
    assert main(["audit", "hash", "--salt-file", str(salt_file), "bob"]) == 0
    assert capsys.readouterr().out.strip() == user_ref(SALT, "bob")


def test_missing_salt_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a salt the command exits 1 naming both ways to give one."""
    monkeypatch.delenv("KEYTURN_AUDIT_SALT", raising=False)
    assert main(["audit", "hash", "alice"]) == 1
    err = capsys.readouterr().err
    assert "--salt-file" in err and "KEYTURN_AUDIT_SALT" in err


def test_bad_salt_errors_never_echo_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-hex or unreadable salt exits 1 naming the source, not the value."""
    monkeypatch.setenv("KEYTURN_AUDIT_SALT", "not-a-hex-salt-value")
    assert main(["audit", "hash", "alice"]) == 1
    err = capsys.readouterr().err
    assert "KEYTURN_AUDIT_SALT is not hex" in err and "not-a-hex-salt-value" not in err
    assert main(["audit", "hash", "--salt-file", str(tmp_path / "nope"), "alice"]) == 1
    assert "cannot read salt file" in capsys.readouterr().err


def test_audit_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`keyturn audit` alone prints its help and exits 2."""
    assert main(["audit"]) == 2
    assert "hash" in capsys.readouterr().out


def test_hash_and_export_from_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With -c, audit hash uses the engine's stored salt and audit export prints that user's records."""
    import asyncio
    import json as _json

    from engine.cli.storecmd import open_store
    from engine.crypto.cipher import generate_key

    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"api: {{development: true}}\nstorage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n"
        f"security: {{root_keys: [{{id: k, value: '{generate_key()}'}}]}}\n"
    )
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert main(["audit", "hash", "alice", "-c", str(cfg)]) == 0
    ref = capsys.readouterr().out.strip().splitlines()[-1]

    class Args:
        config = str(cfg)

    async def write() -> None:
        async with open_store(Args()) as store:  # type: ignore[arg-type]
            await store.audit.write({"event": "flow.started", "outcome": "success", "user_ref": ref})
            await store.audit.write(
                {"event": "flow.started", "outcome": "success", "user_ref": "someone-else"}
            )

    asyncio.run(write())
    assert main(["audit", "export", "--user", "alice", "-c", str(cfg)]) == 0
    lines = [_json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["user_ref"] for r in lines] == [ref]
    assert main(["audit", "export", "--format", "csv", "--since", "2000-01-01", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count("flow.started") == 2
    assert out.splitlines()[0] == "time,event,outcome,provider,tool,request_id,user_ref,source_ip,data"
    assert main(["audit", "export", "--since", "yesterday", "-c", str(cfg)]) == 1
