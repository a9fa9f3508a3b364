"""Summarize a py-spy raw profile (``KEYTURN_BENCH_PROFILE=1``): the functions taking most samples.

python bench/profile_top.py bench/results/profile_execute.txt [--top 40] [--match engine/]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in Path(args.path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        if "select (selectors.py" in frames[-1] or ("_run_once" in frames[-1] and "select" in frames[-1]):
            idle += n
        own[frames[-1]] += n
        for f in set(frames):
            if args.match in f:
                inclusive[f] += n
    print(f"samples {total}, in the event loop's select (idle) {idle} ({idle / max(total, 1):.0%})")
    print("-- inclusive")
    for f, n in inclusive.most_common(args.top):
        print(f"{n / total:6.1%}  {f}")
    print("-- own")
    for f, n in own.most_common(args.top // 2):
        print(f"{n / total:6.1%}  {f}")


if __name__ == "__main__":
    main()
