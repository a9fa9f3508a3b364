"""engine.daemon: `keyturn serve` as a real process: start, answer, reload on SIGHUP, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.crypto.cipher import Keyring, decode_key, generate_key
from engine.store.store import Store
from tests.plugins.fake_provider import FakeProvider
from tests.plugins.fake_provider import engine_config as fake_engine_config
from tests.plugins.mini_provider import acme_config


class Served:
    def __init__(self, proc: asyncio.subprocess.Process, lines: list[dict[str, Any]]) -> None:
        self.proc = proc
        self.lines = lines
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.get("event") == event:
                    return line
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event!r} log line; got {[line.get('event') for line in self.lines]}")


async def _pump(stream: asyncio.StreamReader, lines: list[dict[str, Any]]) -> None:
    while raw := await stream.readline():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"event": "<non-json>", "text": raw.decode(errors="replace")})


async def start_serve(config: Path, *args: str) -> tuple[Served, asyncio.Task[None]]:
    """``keyturn serve -c config [args]`` as a process, its log lines collected; returns once it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=config.parent, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    pump = asyncio.create_task(_pump(proc.stdout, lines))
    served = Served(proc, lines)
    started = await served.wait_for("started")
    served.port = int(started["listen"][0].rsplit(":", 1)[1])
    return served, pump


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    config = tmp_path / "engine.yaml"
    config.write_text("api: {development: true, port: 0}\nlogging: {level: info, format: json}\n")
    served, pump = await start_serve(config)
    yield served
    if served.proc.returncode is None:
        served.proc.kill()
        await served.proc.wait()
    pump.cancel()


async def test_serve_answers_ping_and_stops_on_sigterm(served: Served) -> None:
    """The daemon answers /ping and /v1/health, then exits 0 on SIGTERM."""
    async with aiohttp.ClientSession() as session:
        async with session.get(served.url + "/ping") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with session.get(served.url + "/v1/health") as resp:
            assert (await resp.json()) == {"healthy": True}
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(served.proc.wait(), 15)
    except TimeoutError:
        raise AssertionError(f"no exit after SIGTERM; log: {served.lines}") from None
    assert code == 0
    await served.wait_for("stopped")


async def test_sigint_also_stops(served: Served) -> None:
    """SIGINT stops the daemon cleanly with exit code 0."""
    served.proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


async def test_sighup_with_broken_config_keeps_running(served: Served, tmp_path: Path) -> None:
    """A SIGHUP with an invalid engine.yaml logs the error and keeps serving the old config."""
    (tmp_path / "engine.yaml").write_text("api: {development: true, port: 0, bogus: 1}\n")
    served.proc.send_signal(signal.SIGHUP)
    rejected = await served.wait_for("config_reload_rejected")
    assert "api.bogus" in rejected["error"]
    async with aiohttp.ClientSession() as session, session.get(served.url + "/ping") as resp:
        assert resp.status == 200
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


async def test_sighup_applies_a_valid_config(served: Served, tmp_path: Path) -> None:
    """A SIGHUP with a valid new provider makes it usable without a restart; audit says config.reloaded."""
    provider = (
        "auth:\n  providers:\n    - id: newco\n      client_id: c\n      client_secret: s\n      oauth2:\n"
        "        authorization_request: {endpoint: 'http://127.0.0.1:1/authorize'}\n"
        "        token_request: {endpoint: 'http://127.0.0.1:1/token'}\n"
    )
    (tmp_path / "engine.yaml").write_text(
        "api: {development: true, port: 0}\nsecurity: {api_keys: [k-0123456789abcdef]}\n" + provider
    )
    served.proc.send_signal(signal.SIGHUP)
    await served.wait_for("config.reloaded")
    body = {"user_id": "u1", "auth_requirement": {"provider_id": "newco", "oauth2": {"scopes": ["a"]}}}
    headers = {"Authorization": "Bearer k-0123456789abcdef"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + "/v1/auth/authorize", json=body, headers=headers) as resp,
    ):
        assert resp.status == 200 and (await resp.json())["status"] == "pending"
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


async def test_sighup_logs_the_new_config_warnings(served: Served, tmp_path: Path) -> None:
    """A SIGHUP with a config that loads with warnings logs each as a config_warning line naming its key."""
    assert not [line for line in served.lines if line.get("event") == "config_warning"]
    (tmp_path / "engine.yaml").write_text(
        "api: {development: true, port: 0, read_timeout: 30s, write_timeout: 1m}\n"
        "logging: {level: info, format: json}\n"
    )
    served.proc.send_signal(signal.SIGHUP)
    await served.wait_for("config_reloaded")
    warned = [line["detail"] for line in served.lines if line.get("event") == "config_warning"]
    for key in ("api.read_timeout", "api.write_timeout"):
        assert any(w.startswith(key + ":") for w in warned), (key, warned)
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


async def test_bad_config_exits_1_without_traceback(tmp_path: Path) -> None:
    """`keyturn serve` on an invalid file prints file:line: path: message and exits 1, no traceback."""
    config = tmp_path / "engine.yaml"
    config.write_text("api:\n  development: true\n  prot: 1\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "serve",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 1
    text = err.decode()
    assert f"{config}:3: api.prot: unknown key (did you mean 'port'?)" in text
    assert "Traceback" not in text + out.decode()


async def test_sigterm_with_refreshes_in_flight(tmp_path: Path, mini_provider: Any) -> None:
    """SIGTERM during slow refreshes: exit 0; every grant stays readable and is refreshed or still due."""

    key = generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"api: {{development: true, port: 0}}\nstorage: {{url: '{db}'}}\n"
        "lifecycle: {refresh_interval: 1s, refresh_jitter: 0s, refresh_concurrency: 4}\n"
        + acme_config(mini_provider, security=f"root_keys: [{{id: k, value: '{key}'}}]")
    )
    store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"))
    now = datetime.now(UTC)
    for i in range(8):
        refresh = mini_provider._token()
        mini_provider.valid_refresh.add(refresh)
        await store.grants.upsert(
            f"u{i}",
            "acme",
            access_token=mini_provider._token(),
            refresh_token=refresh,
            id_token=None,
            token_type="Bearer",
            expires_at=now + timedelta(seconds=60),
            scopes=["read"],
            subject=None,
            user_info=None,
            token_metadata={},
            next_refresh_at=now - timedelta(seconds=1),
        )
    await store.close()
    mini_provider.refresh_delay = 2.0
    served, pump = await start_serve(config)
    proc = served.proc
    for _ in range(200):
        if mini_provider.refresh_calls:
            break
        await asyncio.sleep(0.05)
    assert mini_provider.refresh_calls, "the engine never started refreshing"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    pump.cancel()
    store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"))
    try:
        grants = await store.grants.list()
        assert len(grants) == 8
        for grant in grants:
            assert grant.status == "active" and grant.access_token  # readable
            refreshed = grant.refreshed_at is not None
            still_due = grant.next_refresh_at is not None and grant.next_refresh_at <= datetime.now(UTC)
            assert refreshed or still_due
    finally:
        await store.close()


async def test_audit_file_reopened_on_sighup(tmp_path: Path) -> None:
    """logrotate moves the audit file; after SIGHUP the engine writes to a new file at the configured path."""
    audit = tmp_path / "audit.log"
    config = tmp_path / "engine.yaml"
    config.write_text(f"api: {{development: true, port: 0}}\naudit: {{sinks: [file], file: '{audit}'}}\n")
    served, pump = await start_serve(config)
    proc = served.proc
    assert "config.loaded" in audit.read_text()
    rotated = tmp_path / "audit.log.1"
    audit.rename(rotated)
    proc.send_signal(signal.SIGHUP)
    await served.wait_for("config_reloaded")
    for _ in range(100):
        if audit.exists() and "config.reloaded" in audit.read_text():
            break
        await asyncio.sleep(0.05)
    assert "config.reloaded" in audit.read_text() and "config.reloaded" not in rotated.read_text()
    assert oct(audit.stat().st_mode & 0o777) == "0o600"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    pump.cancel()


async def stop(served: Served, pump: asyncio.Task[None]) -> None:
    served.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(served.proc.wait(), 15)
    pump.cancel()


async def test_public_url_names_the_bound_port(served: Served) -> None:
    """With api.port 0 and no public_url, the public_url logged at start names the port bound."""
    started = await served.wait_for("started")
    assert started["public_url"] == served.url


async def test_port_override_moves_a_derived_public_url(tmp_path: Path) -> None:
    """serve --port N with api.host 0.0.0.0 and no public_url: flow links use port N, not api.port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "engine.yaml"
    config.write_text("api: {development: true, host: 0.0.0.0, port: 9099}\n")
    served, pump = await start_serve(config, "--port", str(port))
    try:
        started = await served.wait_for("started")
        assert started["public_url"] == f"http://127.0.0.1:{port}"
        assert served.port == port
    finally:
        await stop(served, pump)


async def test_arcade_api_timeouts_load_and_idle_timeout_closes_kept_alive_connections(
    tmp_path: Path,
) -> None:
    """Arcade's api block (read/write/idle_timeout, max_request_body_size, rate_limit) starts the engine;
    the keys it cannot apply are named in config_warning lines; an idle kept-alive connection is closed
    after api.idle_timeout; a body over max_request_body_size gets 413."""
    config = tmp_path / "engine.yaml"
    config.write_text(
        "api:\n  development: true\n  port: 0\n  read_timeout: 30s\n  write_timeout: 1m\n"
        "  idle_timeout: 500ms\n  max_request_body_size: 2048\n  rate_limit: {noop: {}}\n"
        "security: {api_keys: [test-key-0123456789abcdef]}\nlogging: {level: info, format: json}\n"
    )
    served, pump = await start_serve(config)
    try:
        warned = [line["detail"] for line in served.lines if line.get("event") == "config_warning"]
        for key in ("api.read_timeout", "api.write_timeout", "api.rate_limit"):
            assert any(w.startswith(key + ":") for w in warned), (key, warned)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        # the server closes the idle connection (the default 75 s would outlast this bound)
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        async with aiohttp.ClientSession(
            headers={"Authorization": "Bearer test-key-0123456789abcdef"}
        ) as session:
            big = {"user_id": "u", "auth_requirement": {"provider_id": "x" * 4096}}
            async with session.post(served.url + "/v1/auth/authorize", json=big) as resp:
                assert resp.status == 413
    finally:
        await stop(served, pump)


async def test_startup_has_no_alembic_info_lines(served: Served) -> None:
    """A first start creates the schema with one line of ours and none of Alembic's INFO lines."""
    await served.wait_for("started")
    assert not [line for line in served.lines if str(line.get("logger", "")).startswith("alembic")]
    [migrated] = [line for line in served.lines if line.get("event") == "database_migrated"]
    assert migrated["from_revision"] == "none" and migrated["level"] == "info"


def test_serve_on_a_terminal_logs_console_lines_and_audit_stays_json(tmp_path: Path) -> None:
    """Run from a terminal, serve's log lines are human-readable; audit records stay JSON lines."""
    config = tmp_path / "engine.yaml"
    config.write_text("api: {development: true, port: 0}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["NO_COLOR"] = "1"
    main_fd, tty_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "-c", str(config)],
        stdin=subprocess.DEVNULL, stdout=tty_fd, stderr=tty_fd, cwd=tmp_path, env=env,
    )  # fmt: skip
    os.close(tty_fd)
    text = ""
    try:
        deadline = time.monotonic() + 20
        while "started" not in text and time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.5)
            if ready:
                text += os.read(main_fd, 65536).decode(errors="replace")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        os.close(main_fd)
    rows = [row.strip() for row in text.replace("\r", "").splitlines() if row.strip()]
    [started] = [row for row in rows if " started " in f" {row} "]
    assert not started.startswith("{") and "[info" in started and "public_url=" in started
    [audit] = [row for row in rows if '"config.loaded"' in row]
    assert json.loads(audit)["logger"] == "keyturn.audit"
    assert not [row for row in rows if "alembic" in row]


async def _store_due_grant(db: str, key: str, refresh_token: str) -> str:
    store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"))
    try:
        now = datetime.now(UTC)
        grant = await store.grants.upsert(
            "u1",
            "fake",
            access_token="at-old-" + generate_key(),
            refresh_token=refresh_token,
            id_token=None,
            token_type="Bearer",
            expires_at=now + timedelta(seconds=60),
            scopes=["read"],
            subject=None,
            user_info=None,
            token_metadata={},
            next_refresh_at=now - timedelta(seconds=1),
        )
        return grant.id
    finally:
        await store.close()


async def test_sigterm_mid_refresh_stores_the_rotated_tokens(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """SIGTERM while the provider takes 6.5 s to answer (grace 20 s): rotated tokens are stored, exit 0."""
    key = generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"api: {{development: true, port: 0, shutdown_grace: 20s}}\nstorage: {{url: '{db}'}}\n"
        "lifecycle: {refresh_jitter: 0s, refresh_timeout: 30s}\n"
        f"security: {{root_keys: [{{id: k, value: '{key}'}}]}}\n" + fake_engine_config(fake_provider)
    )
    old_refresh = fake_provider.live_refresh_token()
    grant_id = await _store_due_grant(db, key, old_refresh)
    fake_provider.token_answers = ["rotate_then_slow"]
    fake_provider.slow_seconds = 6.5
    served, pump = await start_serve(config)
    for _ in range(200):
        if fake_provider.token_requests:
            break
        await asyncio.sleep(0.05)
    assert fake_provider.token_requests, "the engine never started refreshing"
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 40) == 0
    pump.cancel()
    assert old_refresh not in fake_provider.live_refresh_tokens()  # the provider rotated it
    store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"))
    try:
        grant = await store.grants.get(grant_id)
    finally:
        await store.close()
    assert grant is not None and grant.status == "active" and grant.refreshed_at is not None
    assert grant.refresh_token in fake_provider.live_refresh_tokens()


async def test_serve_on_a_busy_port_exits_without_refreshing(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """`serve` on a port in use exits 1 with "cannot listen on" and never calls the token endpoint."""
    key = generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        config = tmp_path / "engine.yaml"
        config.write_text(
            f"api: {{development: true, port: {port}}}\nstorage: {{url: '{db}'}}\n"
            "lifecycle: {refresh_jitter: 0s}\n"
            f"security: {{root_keys: [{{id: k, value: '{key}'}}]}}\n" + fake_engine_config(fake_provider)
        )
        await _store_due_grant(db, key, fake_provider.live_refresh_token())
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "serve", "-c", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        busy.close()
    await asyncio.sleep(0.5)  # a refresh request that was already on its way would have arrived
    assert fake_provider.token_requests == []
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
    assert "Traceback" not in err.decode() + out.decode()


async def test_serve_refuses_a_wrong_root_key(tmp_path: Path) -> None:
    """`serve` with another key under the id that sealed the database exits 1 naming the id, not the key."""
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    store = await Store.open(db, Keyring({"k": decode_key(generate_key())}, "k"))
    await store.close()
    wrong = generate_key()
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"api: {{development: true, port: 0}}\nstorage: {{url: '{db}'}}\n"
        f"security: {{root_keys: [{{id: k, value: '{wrong}'}}]}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "wrong_key: root key 'k' is not the key" in err.decode()
    assert wrong not in err.decode() + out.decode() and "Traceback" not in err.decode()


async def _mcp_initialize(session: aiohttp.ClientSession, url: str) -> int:
    client = {"name": "t", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    headers = {"Accept": "application/json, text/event-stream"}
    async with session.post(url + "/mcp", json=body, headers=headers) as resp:
        return resp.status


async def test_sighup_applies_rate_limits_mcp_auth_and_audit_sinks(tmp_path: Path) -> None:
    """After SIGHUP: a lower API key limit answers 429, mcp.auth none stops the 401, a new file sink is
    written to; a storage change is reported (log and audit) as needing a restart."""
    config = tmp_path / "engine.yaml"
    audit = tmp_path / "audit.log"
    base = (
        "api: {development: true, port: 0}\nlogging: {level: info, format: json}\n"
        f"storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n"
    )
    config.write_text(
        base + "security: {api_keys: [k-0123456789abcdef], rate_limiting: {max_api_key_failures: 1000}}\n"
    )
    served, pump = await start_serve(config)
    bad = {"Authorization": "Bearer wrong-key"}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(served.url + "/v1/tools", headers=bad) as resp:
                    assert resp.status == 401
            assert await _mcp_initialize(session, served.url) == 401
            config.write_text(
                base.replace("storage: {", "storage: {busy_timeout: 9s, ")
                + "security: {api_keys: [k-0123456789abcdef], rate_limiting: {max_api_key_failures: 2}}\n"
                + "mcp: {auth: none}\n"
                + f"audit: {{sinks: [stdout, file], file: '{audit}'}}\n"
            )
            served.proc.send_signal(signal.SIGHUP)
            reloaded = await served.wait_for("config_reloaded")
            assert reloaded["needs_restart"] == ["storage.busy_timeout"]
            assert {"security.rate_limiting.max_api_key_failures", "mcp.auth", "audit.sinks"} <= set(
                reloaded["changed"]
            )
            audited = [line for line in served.lines if line.get("logger") == "keyturn.audit"]
            assert any(a["event"] == "config.reloaded" and a["needs_restart"] for a in audited)
            async with session.get(served.url + "/v1/tools", headers=bad) as resp:
                assert resp.status == 429  # 3 failures already over the new limit of 2
            assert await _mcp_initialize(session, served.url) == 200
        events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
        assert "config.reloaded" in events and "rate_limited" in events
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.proc.wait(), 15) == 0
        pump.cancel()


async def test_sighup_shortens_the_refresh_interval(tmp_path: Path, mini_provider: Any) -> None:
    """refresh_interval 1h -> 1s on SIGHUP: the scheduler is rescheduled and a due grant is refreshed."""
    key = generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    config = tmp_path / "engine.yaml"
    head = f"api: {{development: true, port: 0}}\nstorage: {{url: '{db}'}}\n"
    security = f"root_keys: [{{id: k, value: '{key}'}}]"
    config.write_text(
        head
        + "lifecycle: {refresh_interval: 1h, refresh_jitter: 0s}\n"
        + acme_config(mini_provider, security=security)
    )
    served, pump = await start_serve(config)
    try:
        await asyncio.sleep(1.0)  # the first pass (at start) is over
        store = await Store.open(db, Keyring({"k": decode_key(key)}, "k"))
        refresh = mini_provider._token()
        mini_provider.valid_refresh.add(refresh)
        now = datetime.now(UTC)
        await store.grants.upsert(
            "u1", "acme", access_token=mini_provider._token(), refresh_token=refresh, id_token=None,
            token_type="Bearer", expires_at=now + timedelta(seconds=60), scopes=["read"], subject=None,
            user_info=None, token_metadata={}, next_refresh_at=now - timedelta(seconds=1),
        )  # fmt: skip
        await store.close()
        await asyncio.sleep(1.5)
        assert mini_provider.refresh_calls == []  # not before the next pass, an hour away
        config.write_text(
            head
            + "lifecycle: {refresh_interval: 1s, refresh_jitter: 0s}\n"
            + acme_config(mini_provider, security=security)
        )
        served.proc.send_signal(signal.SIGHUP)
        line = await served.wait_for("job_rescheduled")
        assert line["job"] == "refresh" and line["interval_s"] == 1.0
        for _ in range(100):
            if mini_provider.refresh_calls:
                break
            await asyncio.sleep(0.1)
        assert mini_provider.refresh_calls == [refresh]
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.proc.wait(), 15) == 0
        pump.cancel()


async def _sessions_by_pid(url: str, want: int = 2) -> dict[int, aiohttp.ClientSession]:
    """One kept-alive connection per serving process, found by asking /ready which pid answers (it names
    the pid only to a caller with an API key)."""
    found: dict[int, aiohttp.ClientSession] = {}
    for _ in range(40):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        key = {"Authorization": "Bearer test-api-key-0123456789abcdef"}
        async with session.get(url + "/ready", headers=key) as resp:
            pid = (await resp.json())["pid"]
        if pid in found:
            await session.close()
        else:
            found[pid] = session
        if len(found) >= want:
            break
    return found


async def _start_processes(tmp_path: Path, mini_provider: Any) -> tuple[Served, asyncio.Task[None]]:
    config = tmp_path / "engine.yaml"
    config.write_text(
        "api: {development: true, port: 0, processes: 2}\nlogging: {level: info, format: json}\n"
        + acme_config(
            mini_provider,
            security="api_keys: ['test-api-key-0123456789abcdef'], "
            "rate_limiting: {max_auth_attempts: 5, max_api_key_failures: 4}",
        )
    )
    served, pump = await start_serve(config)
    deadline = time.monotonic() + 20
    while sum(line.get("event") == "started" for line in served.lines) < 2:
        assert time.monotonic() < deadline, served.lines
        await asyncio.sleep(0.05)
    return served, pump


async def test_two_processes_share_port_limits_and_wakeups(tmp_path: Path, mini_provider: Any) -> None:
    """api.processes: 2 serves one port from two pids; rate limits count across both; a long-poll on one
    wakes when the callback lands on the other; a killed child is restarted; SIGTERM stops all (exit 0)."""
    served, pump = await _start_processes(tmp_path, mini_provider)
    auth = {"Authorization": "Bearer test-api-key-0123456789abcdef"}
    sessions = await _sessions_by_pid(served.url)
    try:
        assert len(sessions) == 2, "only one process answered"
        one, two = sessions.values()
        # a long-poll held by one process wakes when the flow completes through the other
        body = {"user_id": "u1", "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
        async with one.post(served.url + "/v1/auth/authorize", json=body, headers=auth) as resp:
            flow = await resp.json()
        started = time.monotonic()
        waiting = asyncio.ensure_future(
            one.get(served.url + f"/v1/auth/status?id={flow['id']}&wait=20", headers=auth)
        )
        await asyncio.sleep(0.3)
        async with two.get(flow["url"], allow_redirects=False) as resp:
            to_provider = resp.headers["Location"]
        async with two.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with two.get(callback, allow_redirects=False) as resp:
            assert resp.status < 400
        resp = await asyncio.wait_for(waiting, 10)
        assert (await resp.json())["status"] == "completed"
        resp.release()
        assert time.monotonic() - started < 5, "the waiter was not woken"
        # new flows for one user and provider: 5 allowed in all, not 5 per process
        codes = []
        for i in range(6):
            session = (one, two)[i % 2]
            scoped = {"user_id": "u2", "auth_requirement": {"id": "acme", "oauth2": {"scopes": [f"s{i}"]}}}
            async with session.post(served.url + "/v1/auth/authorize", json=scoped, headers=auth) as resp:
                codes.append(resp.status)
        assert codes == [200] * 5 + [429], codes
        # bad API keys from one address: 4 failures in all, then 429 from either process
        codes = []
        for i in range(6):
            async with (one, two)[i % 2].get(
                served.url + "/v1/tools", headers={"Authorization": "Bearer wrong"}
            ) as resp:
                codes.append(resp.status)
        assert codes == [401] * 4 + [429, 429], codes
        # a killed child is forked again and serves
        victim = next(iter(sessions))
        os.kill(victim, signal.SIGKILL)
        await served.wait_for("process_restarted")
        new = await _sessions_by_pid(served.url)
        pids = set(new)
        for extra in new.values():
            await extra.close()
        assert victim not in pids
    finally:
        for session in sessions.values():
            await session.close()
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0
    pump.cancel()


async def test_sigterm_writes_the_queued_audit_records(tmp_path: Path) -> None:
    """The audit record of the last request before SIGTERM is in the audit file once the process exited."""
    audit = tmp_path / "audit.log"
    config = tmp_path / "engine.yaml"
    config.write_text(
        "api: {development: true, port: 0}\nsecurity: {api_keys: ['k-0123456789abcdef0123']}\n"
        f"audit: {{sinks: [file], file: '{audit}'}}\n"
    )
    served, pump = await start_serve(config)
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer wrong-key"}
        async with session.post(served.url + "/v1/tools/execute", json={}, headers=headers) as resp:
            assert resp.status == 401
    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0
    pump.cancel()
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events[0] == "config.loaded" and events[-1] == "api_key.denied"


@pytest.mark.parametrize(
    ("choice", "expected"), [("uvloop", "uvloop"), ("asyncio", "asyncio"), ("auto", "uvloop")]
)
async def test_serve_runs_on_the_configured_event_loop(tmp_path: Path, choice: str, expected: str) -> None:
    """api.event_loop: a real `keyturn serve` runs on the chosen loop (auto: uvloop, a dependency) and
    answers on it."""
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"api: {{development: true, port: 0, event_loop: {choice}}}\nlogging: {{level: info, format: json}}\n"
    )
    served, pump = await start_serve(config)
    try:
        assert (await served.wait_for("started"))["event_loop"] == expected
        async with aiohttp.ClientSession() as session, session.get(served.url + "/ping") as resp:
            assert resp.status == 200
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.proc.wait(), 15) == 0
        pump.cancel()


async def test_every_process_runs_on_the_configured_event_loop(tmp_path: Path) -> None:
    """With api.processes: 2 each forked child starts on the configured loop."""
    config = tmp_path / "engine.yaml"
    config.write_text(
        "api: {development: true, port: 0, processes: 2, event_loop: uvloop}\n"
        "logging: {level: info, format: json}\n"
    )
    served, pump = await start_serve(config)
    try:
        deadline = time.monotonic() + 20
        while len(started := [x for x in served.lines if x.get("event") == "started"]) < 2:
            assert time.monotonic() < deadline, served.lines
            await asyncio.sleep(0.05)
        assert [x["event_loop"] for x in started] == ["uvloop", "uvloop"]
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.proc.wait(), 20) == 0
        pump.cancel()
