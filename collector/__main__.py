"""``python -m collector [--config FILE] [--dry-run]``: the same as ``artifactapi gc``."""

from __future__ import annotations

import argparse
import sys

from app.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m collector", description=__doc__)
    parser.add_argument("--config", help="YAML file (default: ./artifactapi.yaml if present)")
    parser.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    args = parser.parse_args()
    argv = ["--config", args.config] if args.config else []
    sys.exit(main([*argv, "gc", *(["--dry-run"] if args.dry_run else [])]))
