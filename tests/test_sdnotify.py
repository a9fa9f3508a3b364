"""engine.sdnotify: datagrams on a real AF_UNIX socket as $NOTIFY_SOCKET; what the daemon sends."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import sdnotify


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def notify_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "n.sock"
    sock = _receiver(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_unset_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $NOTIFY_SOCKET every helper returns False and raises nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert not any(f() for f in (sdnotify.ready, sdnotify.stopping, sdnotify.reloading, sdnotify.watchdog))


def test_ready_reaches_a_path_socket(notify_path: socket.socket) -> None:
    """ready() sends one READY=1 datagram to a filesystem socket."""
    assert sdnotify.ready() is True
    assert notify_path.recv(4096) == b"READY=1"


def test_stopping_and_watchdog(notify_path: socket.socket) -> None:
    """stopping() and watchdog() send STOPPING=1 and WATCHDOG=1."""
    assert sdnotify.stopping() and sdnotify.watchdog()
    assert notify_path.recv(4096) == b"STOPPING=1"
    assert notify_path.recv(4096) == b"WATCHDOG=1"


def test_reloading_carries_the_monotonic_time(notify_path: socket.socket) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC from CLOCK_MONOTONIC."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = notify_path.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """An @name socket is the abstract namespace (a leading NUL byte)."""
    name = f"keyturn-test-{uuid.uuid4().hex}"
    with _receiver(b"\0" + name.encode()) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("STATUS=hello") is True
        assert sock.recv(4096) == b"STATUS=hello"


def test_missing_socket_or_unsupported_address_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path nobody listens on, or a vsock:/relative address, returns False instead of raising."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert sdnotify.ready() is False
    for value in ("vsock:2:1234", "relative.sock"):
        monkeypatch.setenv("NOTIFY_SOCKET", value)
        assert sdnotify.ready() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """watchdog_interval() is $WATCHDOG_USEC in seconds, None if unset, bad, zero or for another pid."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "x")
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None


async def _next(sock: socket.socket, skip_watchdog: bool = True) -> str:
    loop = asyncio.get_running_loop()
    while True:
        data = (await asyncio.wait_for(loop.sock_recv(sock, 4096), 20)).decode()
        if not (skip_watchdog and data == "WATCHDOG=1"):
            return data


async def test_daemon_notifies_ready_watchdog_reloading_stopping(tmp_path: Path) -> None:
    """`keyturn serve` under NOTIFY_SOCKET: READY, WATCHDOG pings, RELOADING+READY on SIGHUP, STOPPING."""
    config = tmp_path / "engine.yaml"
    config.write_text("api: {development: true, port: 0}\nlogging: {level: warning, format: json}\n")
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="400000")  # pings every 0.2 s
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        assert await _next(sock) == "READY=1"
        assert await _next(sock, skip_watchdog=False) == "WATCHDOG=1"
        assert await _next(sock, skip_watchdog=False) == "WATCHDOG=1"
        proc.send_signal(signal.SIGHUP)
        assert (await _next(sock)).startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert await _next(sock) == "READY=1"
        proc.send_signal(signal.SIGTERM)
        assert await _next(sock) == "STOPPING=1"
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sock.close()
