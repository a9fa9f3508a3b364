"""engine.cli.main: subcommands, --help everywhere, check-config and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import __version__
from engine.cli.main import build_parser, command_modules, main

SECRET = "s3cr3t-value-never-printed"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`keyturn version` prints the version and exits 0."""
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Every subcommand answers --help with exit 0."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = list(sub.choices)  # type: ignore[arg-type]
    assert {"serve", "check-config", "providers", "version"} <= set(names)
    assert len(command_modules()) >= 4
    for name in names:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`keyturn` alone prints help and exits 2."""
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_check_config_ok_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config exits 0 and prints resolved providers with the client secret masked."""
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "api: {development: true}\nauth:\n  providers:\n"
        f"    - {{id: gh, provider_id: github, client_id: abc, client_secret: {SECRET}}}\n"
    )
    assert main(["check-config", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "gh" in out and "https://github.com/login/oauth/access_token" in out
    assert SECRET not in out and "********" in out
    assert main(["check-config", "-c", str(cfg), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["providers"]["gh"]["client_secret"] == "********"
    assert SECRET not in json.dumps(data)


def test_check_config_error_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config on a bad file exits 1 and names file, line and key path."""
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "api: {development: true}\nauth:\n  providers:\n    - {id: gh, provider_id: githb, client_id: x}\n"
    )
    assert main(["check-config", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:4: auth.providers[0].provider_id:" in err and "did you mean 'github'" in err


def test_duplicate_provider_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two providers with one id are an error naming the second entry."""
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "api: {development: true}\nauth:\n  providers:\n"
        "    - {id: gh, provider_id: github, client_id: x, client_secret: y}\n"
        "    - {id: gh, provider_id: github, client_id: x, client_secret: y}\n"
    )
    assert main(["check-config", "-c", str(cfg)]) == 1
    assert "auth.providers[1].id: duplicate provider id 'gh'" in capsys.readouterr().err


def test_config_from_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -c, $KEYTURN_CONFIG names the file."""
    cfg = tmp_path / "k.yaml"
    cfg.write_text("api: {development: true}\n")
    monkeypatch.setenv("KEYTURN_CONFIG", str(cfg))
    assert main(["check-config"]) == 0
    assert str(cfg) in capsys.readouterr().out
