"""keyturn grants list|revoke against a real database and a loopback provider."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.cli.storecmd import open_store
from engine.crypto.cipher import generate_key
from tests.plugins.mini_provider import MiniProvider


def write_config(tmp_path: Path, p: MiniProvider) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"""
api: {{development: true}}
storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}
security: {{root_keys: [{{id: k, value: '{generate_key()}'}}]}}
auth:
  providers:
    - id: acme
      client_id: cid
      client_secret: csecret
      oauth2:
        authorization_request: {{endpoint: "{p.url("/authorize")}"}}
        token_request: {{endpoint: "{p.url("/token")}"}}
        revocation_request: {{endpoint: "{p.url("/revoke")}"}}
""")
    return cfg


async def add_grant(cfg: Path, user: str, token: str, account: str = "default") -> None:
    class Args:
        config = str(cfg)

    async with open_store(Args()) as store:  # type: ignore[arg-type]
        await store.grants.upsert(
            user,
            "acme",
            account=account,
            access_token=token,
            refresh_token=None,
            id_token=None,
            token_type="Bearer",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            scopes=["read"],
            subject=None,
            user_info=None,
            token_metadata={},
            next_refresh_at=None,
        )


async def test_list_and_revoke(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """grants list shows no token; grants revoke calls the provider's RFC 7009 endpoint, then deletes."""
    cfg = write_config(tmp_path, mini_provider)
    token = mini_provider._token()

    def run(argv: list[str]) -> int:
        return main(argv)

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, run, ["db", "upgrade", "-c", str(cfg)]) == 0
    await add_grant(cfg, "alice", token)
    assert await loop.run_in_executor(None, run, ["grants", "list", "--user", "alice", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "acme" in out and token not in out
    assert await loop.run_in_executor(None, run, ["grants", "revoke", "--user", "alice", "-c", str(cfg)]) == 0
    assert "acme: revoked" in capsys.readouterr().out
    assert [r["token"] for r in mini_provider.revocations] == [token]
    assert await loop.run_in_executor(None, run, ["grants", "revoke", "--user", "alice", "-c", str(cfg)]) == 1


async def test_revoke_with_provider_removed_says_not_revoked(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """grants revoke for a provider gone from the config deletes the grant, saying it is not revoked there."""
    cfg = write_config(tmp_path, mini_provider)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["db", "upgrade", "-c", str(cfg)]) == 0
    await add_grant(cfg, "alice", mini_provider._token())
    cfg.write_text(cfg.read_text().replace("- id: acme", "- id: other"))
    capsys.readouterr()
    argv = ["grants", "revoke", "--user", "alice", "-c", str(cfg)]
    assert await loop.run_in_executor(None, main, argv) == 3  # deleted here, not revoked there
    out, err = capsys.readouterr()
    assert "acme: deleted here but NOT revoked at the provider" in out
    assert "1 of 1 grant(s) NOT confirmed revoked at the provider (1 deleted here, 0 kept" in err
    assert mini_provider.revocations == []
    assert await loop.run_in_executor(None, main, argv) == 1  # gone


async def test_unreadable_grant_listed_and_revoked(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grant whose token does not decrypt is listed as unreadable and `grants revoke` deletes it."""
    import sqlalchemy as sa

    cfg = write_config(tmp_path, mini_provider)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["db", "upgrade", "-c", str(cfg)]) == 0
    await add_grant(cfg, "alice", mini_provider._token())
    await add_grant(cfg, "bob", mini_provider._token())

    class Args:
        config = str(cfg)

    async with open_store(Args()) as store, store.engine.begin() as conn:  # type: ignore[arg-type]
        await conn.execute(  # alice's row gets bob's sealed token
            sa.text(
                "UPDATE grants SET access_token=(SELECT access_token FROM grants WHERE user_id='bob') "
                "WHERE user_id='alice'"
            )
        )
    assert await loop.run_in_executor(None, main, ["grants", "list", "-c", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("alice" in line and "unreadable" in line for line in lines)
    assert any("bob" in line and "active" in line for line in lines)
    assert (
        await loop.run_in_executor(None, main, ["grants", "revoke", "--user", "alice", "-c", str(cfg)]) == 3
    )
    out = capsys.readouterr().out
    assert "acme: deleted here but NOT revoked at the provider (its stored tokens could not be read)" in out
    assert mini_provider.revocations == []  # nothing readable to revoke at the provider
    async with open_store(Args()) as store:  # type: ignore[arg-type]
        assert [g.user_id for g in await store.grants.list()] == ["bob"]


async def test_revoke_is_audited_through_the_sinks(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """grants revoke writes grant.revoked through the configured sinks (file and database), redacted."""
    cfg = write_config(tmp_path, mini_provider)
    audit = tmp_path / "audit.log"
    cfg.write_text(cfg.read_text() + f"audit: {{sinks: [file, database, stdout], file: '{audit}'}}\n")
    token = mini_provider._token()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["db", "upgrade", "-c", str(cfg)]) == 0
    await add_grant(cfg, "alice@example.test", token)
    capsys.readouterr()
    argv = ["grants", "revoke", "--user", "alice@example.test", "-c", str(cfg)]
    assert await loop.run_in_executor(None, main, argv) == 0
    out, err = capsys.readouterr()
    assert out == "acme: revoked\n"  # the stdout sink writes to stderr: the output stays the command's
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["event"] for r in records] == ["grant.revoked"]
    assert records[0]["outcome"] == "success" and records[0]["provider"] == "acme"
    assert len(records[0]["user_ref"]) == 64 and "user_id" not in records[0]
    assert '"grant.revoked"' in err
    text = audit.read_text() + err

    class Args:
        config = str(cfg)

    async with open_store(Args()) as store:  # type: ignore[arg-type]
        stored = await store.audit.list()
    assert [r["event"] for r in stored] == ["grant.revoked"]
    assert "alice@example.test" not in text and token not in text


async def test_revoke_exits_3_when_the_provider_cannot_be_reached(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """grants revoke exits 3 (not 0) when the provider answers 503: the grant is kept unusable, not revoked
    there, and stderr says so."""
    cfg = write_config(tmp_path, mini_provider)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["db", "upgrade", "-c", str(cfg)]) == 0
    await add_grant(cfg, "alice", mini_provider._token())
    mini_provider.revoke_status = 503
    capsys.readouterr()
    argv = ["grants", "revoke", "--user", "alice", "-c", str(cfg)]
    assert await loop.run_in_executor(None, main, argv) == 3
    out, err = capsys.readouterr()
    assert "acme: unusable here (kept, status revoked) but NOT yet revoked at the provider" in out
    assert "1 of 1 grant(s) NOT confirmed revoked at the provider (0 deleted here, 1 kept unusable" in err
    assert len(mini_provider.revocations) == 1
    assert await loop.run_in_executor(None, main, ["grants", "list", "--json", "-c", str(cfg)]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["status"] == "revoked"
    mini_provider.revoke_status = 200  # reachable again: revoked there, deleted, exit 0
    assert await loop.run_in_executor(None, main, argv) == 0
    assert capsys.readouterr().out == "acme: revoked\n"


async def test_list_shows_each_account(
    tmp_path: Path, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """grants list has an account column and --json an account field: two accounts of one user and
    provider are told apart, and revoking both names each account."""
    cfg = write_config(tmp_path, mini_provider)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["db", "upgrade", "-c", str(cfg)]) == 0
    token = mini_provider._token()
    await add_grant(cfg, "alice", token)
    await add_grant(cfg, "alice", mini_provider._token(), account="work")
    capsys.readouterr()
    assert await loop.run_in_executor(None, main, ["grants", "list", "-c", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert sorted(line.split()[3] for line in lines) == ["default", "work"]  # id, user, provider, account
    assert await loop.run_in_executor(None, main, ["grants", "list", "--json", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    listed = [json.loads(line) for line in out.splitlines()]
    assert sorted(g["account"] for g in listed) == ["default", "work"]
    assert {g["user_id"] for g in listed} == {"alice"} and token not in out
    assert set(listed[0]) == {"id", "user_id", "provider_id", "account", "is_default", "status", "scopes",
                              "expires_at"}  # fmt: skip
    argv = ["grants", "revoke", "--user", "alice", "-c", str(cfg)]
    assert await loop.run_in_executor(None, main, argv) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["acme (default): revoked", "acme (work): revoked"]
