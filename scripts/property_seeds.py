"""Run the property tests under many Hypothesis seeds, to find a flaky one before a user does.

    python -m scripts.property_seeds                          # tests/nn under seeds 1..50
    python -m scripts.property_seeds --start 101 --count 20 tests/nn tests/denoise
    python -m scripts.property_seeds --dry-run                # print the commands only

CI runs the derandomised "ci" profile (tests/conftest.py): the same examples every time, so a draw that
fails one time in a hundred never shows there, while a newcomer's plain `pytest` draws new examples on
every run. This script runs the "seeds" profile (random, no example database), where
``--hypothesis-seed=N`` fixes the draw (it has no effect under derandomisation), one pytest process per
seed (the profile named on the command line wins over CI=true), and prints one line per seed and the
command that reproduces each failure. Exit status 1 if any seed failed. It is not part of the test suite:
50 seeds of tests/nn take minutes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_command(seed: int, paths: list[str], python: str = sys.executable) -> list[str]:
    """The pytest command line of one seed."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=seeds",
            f"--hypothesis-seed={seed}", *paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=["tests/nn"], help="test files or folders (default tests/nn)")
    parser.add_argument("--start", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--count", type=int, default=50, help="number of consecutive seeds (default 50)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count: {args.count} must be >= 1")
    seeds = range(args.start, args.start + args.count)
    failed = []
    started = time.perf_counter()
    for seed in seeds:
        command = pytest_command(seed, args.paths)
        if args.dry_run:
            print(" ".join(command))
            continue
        t0 = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        tail = (result.stdout.strip().splitlines() or [""])[-1]
        print(f"seed {seed}: {'ok' if result.returncode == 0 else 'FAILED'} ({time.perf_counter() - t0:.0f} s) "
              f"{tail if result.returncode else ''}".rstrip(), flush=True)
        if result.returncode != 0:
            failed.append(seed)
            print(result.stdout[-4000:], flush=True)
    if args.dry_run:
        return 0
    print(f"{len(seeds) - len(failed)} of {len(seeds)} seeds passed ({args.start}..{seeds[-1]}, "
          f"{' '.join(args.paths)}, {time.perf_counter() - started:.0f} s)")
    for seed in failed:
        print("reproduce: " + " ".join(pytest_command(seed, args.paths, "python")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
