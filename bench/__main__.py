"""`make bench`: every scenario, every target, several runs; results in bench/results/.

.venv/bin/python -m bench                       # everything, 3 runs (about an hour)
.venv/bin/python -m bench --scenarios targeted_push --targets insight broadcaster
.venv/bin/python -m bench --quick --out /tmp/b  # tiny sizes: does the benchmark work?
.venv/bin/python -m bench --scenarios targeted_push --baseline main~5   # against a commit
.venv/bin/python -m bench --scenarios targeted_push --users 1000 --rates 2000 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from bench import report
from bench.baseline import checkout
from bench.scenarios import SCENARIOS, Row
from bench.sizes import QUICK, Sizes
from bench.targets import BY_NAME, Target


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--targets", nargs="+", choices=list(BY_NAME), default=list(BY_NAME))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure Insight at this commit, in the same runs; Insight's figures then "
        "show their ratio to it",
    )
    parser.add_argument("--users", type=int, nargs="+", help="connected users (scenario 1)")
    parser.add_argument("--rates", type=int, nargs="+", help="events per second (scenario 1)")
    parser.add_argument("--seconds", type=float, help="each measured window (scenario 1)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.users:
        sizes = replace(sizes, users=tuple(args.users))
    if args.rates:
        sizes = replace(sizes, rates=tuple(args.rates))
    if args.seconds:
        sizes = replace(sizes, seconds=args.seconds)
    targets = tuple(BY_NAME[name] for name in args.targets)
    if args.baseline:
        commit, code = checkout(args.baseline)
        at = next((i + 1 for i, t in enumerate(targets) if t.name == "insight"), 0)
        targets = (*targets[:at], Target("insight", code=code, commit=commit), *targets[at:])
    for name in args.scenarios:
        runs: list[Row] = []
        for repeat in range(args.repeats):
            started = time.monotonic()
            for row in SCENARIOS[name](sizes, targets):
                row = {"repeat": repeat, **row}
                print(json.dumps(row), flush=True)
                runs.append(row)
            print(
                f"# {name} run {repeat + 1}/{args.repeats}: {time.monotonic() - started:.0f}s",
                flush=True,
            )
        print(report.write(name, runs, args.out), flush=True)
    _write_summary(args.out)


def _write_summary(out: Path) -> None:
    """bench/results/README.md: every scenario's latest table, once each has one."""
    tables = [out / f"{name}.md" for name in SCENARIOS]
    if not all(table.exists() for table in tables):
        return
    machine = f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}"
    header = (
        f"# Benchmark results\n\nUpdated {time.strftime('%Y-%m-%d')}, {machine}; the `runs` "
        "column says how many runs each median is of.\n\n"
        "The figures behind design choices in the code: [design-figures.md](design-figures.md).\n"
        "Proof under churn (scenarios 10 to 12, issue 20), how they work and what they found: "
        "[churn.md](churn.md).\n"
    )
    (out / "README.md").write_text("\n".join([header, *(t.read_text() for t in tables)]))


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
