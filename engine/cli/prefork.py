"""``api.processes: N``: serve one port from N forked processes and restart any that dies.

The supervisor (the process ``keyturn serve`` started) reserves the port with a bound, never
listening ``SO_REUSEPORT`` socket (so ``api.port: 0`` picks one port for all), then forks N children;
each binds its own listening socket on that port with ``reuse_port`` and the kernel spreads new
connections over them. Only the first child (index 0, restarted as index 0) runs the refresh/reap
scheduler; the others serve requests and poll their tool catalogs. SIGTERM/SIGINT and SIGHUP are
forwarded to every child; a child that exits while the supervisor is not stopping is forked again
(after a pause that grows while children keep dying at once). The supervisor exits once every child
has exited after a stop, with the first non-zero child status, else 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("keyturn.supervisor")

Child = Callable[[int], int]  # runs one serving process (its index) in the forked child; its exit code


def processes(value: int | str) -> int:
    """``api.processes``: a count, or ``auto`` for one per core."""
    if value == "auto":
        return max(
            1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
    return max(1, int(value))


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket holding ``port`` (0: a free one) for the children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    def __init__(self, count: int, child: Child) -> None:
        self.count = count
        self.child = child
        self.pids: dict[int, int] = {}  # pid -> index
        self.stopping = False
        self.code = 0

    def _fork(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signal handling, then serve
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = self.child(index)
            finally:
                os._exit(code)
        self.pids[pid] = index

    def _forward(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._forward)
        for index in range(self.count):
            self._fork(index)
        log.info("supervisor_started", processes=self.count, pids=sorted(self.pids))
        deaths: list[float] = []
        while self.pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in self.pids:
                continue
            index = self.pids.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM) and self.code == 0:
                    self.code = code if code > 0 else 1
                continue
            log.warning("process_exited", pid=pid, index=index, code=code)
            now = time.monotonic()
            deaths = [t for t in deaths if t > now - 10] + [now]
            if len(deaths) > 2 * self.count:  # a crash loop: wait before forking again
                time.sleep(min(5.0, 0.5 * len(deaths)))
            if not self.stopping:
                self._fork(index)
                log.info("process_restarted", index=index, pids=sorted(self.pids))
        log.info("supervisor_stopped")
        return self.code
