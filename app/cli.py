"""Command line: ``artifactapi serve | gc [--dry-run] | config check FILE | migrate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from app.backends.cache import CacheError
from app.backends.metadata import MetadataError
from app.backends.storage import StorageError
from app.config import Config, ConfigError, load_config
from app.formats import available_formats, validate_repositories

EXIT_CONFIG = 2
EXIT_STARTUP = 1
STARTUP_ERRORS = (MetadataError, StorageError, CacheError, OSError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artifactapi", description=__doc__)
    parser.add_argument("--config", help="YAML file (default: ./artifactapi.yaml if present)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the HTTP service (the default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes sharing the port")
    check = commands.add_parser("config", help="configuration tools").add_subparsers(dest="action")
    check_cmd = check.add_parser("check", help="validate a configuration file and exit")
    check_cmd.add_argument("file")
    commands.add_parser("migrate", help="apply database migrations and exit")
    gc = commands.add_parser("gc", help="collect garbage once and exit")
    gc.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    return parser


def load_checked(path: str | None) -> Config:
    """Load the configuration and validate repositories against their formats."""
    config = load_config(path)
    validate_repositories(config, available_formats())
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "config":
            if args.action != "check":
                _parser().error("usage: artifactapi config check FILE")
            load_checked(args.file)
            print(f"{args.file}: OK")
            return 0
        config = load_checked(args.config)
        if command == "migrate":
            from app.runner import migrate_once

            applied = asyncio.run(migrate_once(config))
            print(f"applied migrations: {', '.join(applied) or 'none (up to date)'}")
            return 0
        if command == "gc":
            from app.logs import configure_logging
            from collector.standalone import collect_once

            configure_logging(config.logging)  # to stderr: stdout is the report
            report = asyncio.run(collect_once(config, dry_run=args.dry_run))
            print("\n".join(report.lines()))
            return 1 if report.error_count else 0
        overrides = {
            k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None
        }
        if overrides:
            config = config.model_copy(
                update={"server": config.server.model_copy(update=overrides)}
            )
        from app.runner import serve

        return serve(config)
    except ConfigError as exc:
        print(f"artifactapi: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except STARTUP_ERRORS as exc:
        if args.debug:
            raise
        print(f"artifactapi: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP


if __name__ == "__main__":
    sys.exit(main())
