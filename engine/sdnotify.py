"""A tiny sd_notify(3) client: tell systemd we are ready, reloading, stopping, alive.

No dependency: one datagram per message on the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for an abstract socket). Every call is a no-op returning ``False`` when the variable is unset
(not started by systemd with ``Type=notify``) or the message could not be sent; nothing here ever raises.
The socket is non-blocking, so a full receive queue drops a message instead of stalling the event loop.

    READY=1                              after the listening socket is bound
    RELOADING=1 + MONOTONIC_USEC=...     on SIGHUP, then READY=1 when the reload is done (or rejected)
    STOPPING=1                           before a graceful shutdown
    WATCHDOG=1                           every half of ``watchdog_interval()`` when ``WatchdogSec=`` is set
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify", "ready", "reloading", "stopping", "watchdog", "watchdog_interval"]


def _address(name: str) -> str | bytes | None:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()  # abstract namespace (Linux)
    if name.startswith("/"):
        return name
    return None  # vsock: and other transports are not supported


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` assignments) to ``$NOTIFY_SOCKET``; True if sent."""
    name = os.environ.get("NOTIFY_SOCKET", "")
    address = _address(name) if name else None
    if address is None or not hasattr(socket, "AF_UNIX"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def ready() -> bool:
    """``READY=1``: startup (or a reload) is finished."""
    return notify("READY=1")


def stopping() -> bool:
    """``STOPPING=1``: a graceful shutdown has begun."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """``RELOADING=1`` with the ``CLOCK_MONOTONIC`` time systemd (253+) uses to match the reload."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def watchdog() -> bool:
    """``WATCHDOG=1``: the service is alive."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds systemd waits between ``WATCHDOG=1`` pings before it kills us, or None when not asked.

    From ``$WATCHDOG_USEC``; None when it is unset, not a positive integer, or ``$WATCHDOG_PID`` names
    another process (the variables were inherited, the watchdog is not ours).
    """
    raw = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
