"""systemd/keyturn.service: INI with the keys the engine relies on; `systemd-analyze verify` is clean."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "keyturn.service"

REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": "/usr/local/bin/keyturn serve -c /etc/keyturn/engine.yaml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "DynamicUser": "yes",
    "StateDirectory": "keyturn",
    "ConfigurationDirectory": "keyturn",
    "EnvironmentFile": "-/etc/keyturn/keyturn.env",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "UMask": "0077",
}


def _parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=True, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def test_unit_parses_with_required_keys() -> None:
    """The unit is INI with [Unit], [Service], [Install] and every key the deployment relies on."""
    unit = _parse(UNIT.read_text())
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    for key, value in REQUIRED.items():
        assert service.get(key) == value, key
    assert service["WatchdogSec"].endswith("s")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_every_hardening_line_is_explained() -> None:
    """Each setting after the hardening marker is preceded by a comment saying what it does."""
    lines = UNIT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- Hardening"))
    end = lines.index("[Install]")
    previous = lines[start]
    for line in lines[start + 1 : end]:
        if line and not line.startswith("#"):
            assert previous.startswith("#"), f"no comment above {line!r}"
        previous = line


def test_env_example_holds_placeholders_only() -> None:
    """keyturn.env.example names the secrets the config reads, with placeholder values only."""
    values = {}
    for line in (SYSTEMD / "keyturn.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    assert {"KEYTURN_ROOT_KEY", "KEYTURN_API_KEY", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"} <= set(values)
    assert all(value.startswith("REPLACE") for value in values.values()), values


NO_ANALYZE = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)


@NO_ANALYZE
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at /bin/true) with no warning about it."""
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/keyturn " in text
    copy = tmp_path / "keyturn.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/keyturn ", "ExecStart=/bin/true "))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # unknown keys and bad values are only warnings ("..., ignoring."): any line about our unit fails
    assert not [line for line in output.splitlines() if "keyturn" in line], output


@NO_ANALYZE
def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The verify check above is not vacuous: a misspelt key is reported."""
    copy = tmp_path / "keyturn.service"
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/keyturn ", "ExecStart=/bin/true ")
    copy.write_text(text.replace("ProtectHome=yes", "ProtectHom=yes"))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key 'ProtectHom'" in proc.stdout + proc.stderr
