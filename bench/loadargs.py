"""The command line that bench/execute.py and bench/status.py share, and their run on a fresh database.

args = load_parser(__doc__, population="users").parse_args()
run_on_database(args, measure)  # measure(args, dbname): dbname is None on SQLite
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from bench import wrk
from bench.pgseed import create_db, drop_db


def load_parser(doc: str | None, *, population: str) -> argparse.ArgumentParser:
    """The shared options; ``population`` names what is seeded (``--users`` or ``--grants``, 1,000)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1, help="api.processes of the engine")
    parser.add_argument(
        "--event-loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="api.event_loop"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="the engine on a fresh PostgreSQL database (dropped after)"
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(f"--{population}", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help=f"a self-check: 1 run of 1 s, 50 {population}")
    return parser


def run_on_database(
    args: argparse.Namespace, measure: Callable[[argparse.Namespace, str | None], None], *, population: str
) -> None:
    """Apply ``--quick``, check wrk is there, then ``measure`` on SQLite or a fresh PostgreSQL database."""
    if args.quick:
        args.runs, args.duration = 1, 1.0
        setattr(args, population, 50)
    wrk.require()
    dbname = asyncio.run(create_db()) if args.postgres else None
    try:
        measure(args, dbname)
    finally:
        if dbname:
            asyncio.run(drop_db(dbname))
