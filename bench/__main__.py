"""Run every benchmark in turn. Benchmarks measure and report; they never fail the run."""

from __future__ import annotations

import importlib
import sys

from bench import MODULES


def main() -> int:
    for name in MODULES:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
