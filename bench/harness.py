"""Shared by the benchmarks: start processes, wait for them, summarize runs, refuse invalid runs.

The load generator is wrk (bench/wrk.py).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def engine_argv(cfg: Path, name: str) -> list[str]:
    """``keyturn serve -c cfg``; ``name`` names the profile when ``KEYTURN_BENCH_PROFILE=1`` (see Proc)."""
    return [PY, "-m", "engine", "serve", "-c", str(cfg), f"--{PROFILE_TAG}={name}"]


PROFILE_TAG = "bench-profile"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process (engine, fake provider, baseline app) stopped with SIGTERM at the end."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        tag = next((a for a in argv if a.startswith(f"--{PROFILE_TAG}=")), None)
        argv = [a for a in argv if a != tag]
        self.popen = subprocess.Popen(
            list(argv), cwd=cwd, env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.spy: subprocess.Popen[bytes] | None = None
        if tag and os.environ.get("KEYTURN_BENCH_PROFILE"):
            # py-spy (PyPI, a bench-only tool) attached to the engine: raw stacks in bench/results/
            spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
            out = results_dir() / f"profile_{tag.partition('=')[2]}.txt"
            cmd = [spy, "record", "--nonblocking", "-f", "raw", "-r", "200", "-o", str(out)]
            self.spy = subprocess.Popen([*cmd, "--pid", str(self.popen.pid)], stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            self.spy.wait(30)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (api.processes), all threads."""
        return sum(_cpu_of(pid) for pid in [self.popen.pid, *_children(self.popen.pid)])

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def with_cpu(proc: Proc, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``run()`` (a wrk run) with ``cpu_us_per_request``: ``proc``'s CPU over the run per request sent.
    On a shared machine this moves less with the load than rps: it counts work, not waiting."""
    before = proc.cpu_seconds()
    result = run()
    spent = proc.cpu_seconds() - before
    result["cpu_us_per_request"] = spent / result["requests"] * 1e6 if result["requests"] else 0.0
    return result


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 when it is gone)."""
    return _cpu_of(pid)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def load_average() -> str:
    """``uptime``'s three load averages, recorded with every result (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def ratios(engine: list[dict[str, float]], baseline: list[dict[str, float]], key: str = "rps") -> list[float]:
    """Per-run ratios engine / baseline (runs taken in turn, so run i of each saw the same machine load)."""
    return [e[key] / b[key] if b[key] else 0.0 for e, b in zip(engine, baseline, strict=True)]


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def report(name: str, result: dict[str, Any]) -> None:
    result = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d"), **result}
    print(json.dumps(result, indent=2))
    (results_dir() / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def results_dir() -> Path:
    out = Path(os.environ.get("KEYTURN_BENCH_RESULTS") or ROOT / "bench" / "results")
    out.mkdir(exist_ok=True)
    return out


def keep_logs(work: Path, name: str) -> None:
    """Copy a run's process logs (engine, worker) to bench/results/NAME-logs/, to read after a failure."""
    out = results_dir() / f"{name}-logs"
    out.mkdir(exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copyfile(log, out / log.name)


def finish(name: str, result: dict[str, Any], failed: int) -> None:
    """Report ``result`` with its failure count; a run where any request failed is invalid: exit 1."""
    report(name, {**result, "failed_requests": failed, "valid": failed == 0})
    if failed:
        print(f"INVALID: {failed} requests failed", file=sys.stderr)
        raise SystemExit(1)
