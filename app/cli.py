"""Command line: ``artifactapi [--config FILE] [--debug] serve | gc [--dry-run] | config check
FILE | migrate | user … | token … | perm … | key … | audit | pypi …``; the global options may
also follow the command (``artifactapi serve --config FILE``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from app import cli_auth, cli_pypi
from app.backends.cache import CacheError
from app.backends.metadata import MetadataError
from app.backends.storage import StorageError
from app.config import Config, ConfigError, load_config
from app.formats import available_formats, validate_repositories

EXIT_CONFIG = 2
EXIT_STARTUP = 1
STARTUP_ERRORS = (MetadataError, StorageError, CacheError, OSError)


def _global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The options every command takes, before or after its name (as git, docker and
    kubectl do). After the name their default is SUPPRESS: an option not given there
    leaves what was given before the name, and one given there wins."""
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS if after_command else None,
        help="YAML file (default: ./artifactapi.yaml if present)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if after_command else False,
        help="show tracebacks on failure",
    )


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=summary, description=summary)
    _global_options(command, after_command=True)
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artifactapi",
        description="An artifact registry: OCI, PyPI, npm and generic repositories.",
        epilog="Global options may come before or after the command"
        " (artifactapi serve --config FILE); given in both places, the later wins.",
    )
    _global_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = _command(commands, "serve", "run the HTTP service (the default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes sharing the port")
    tools = _command(commands, "config", "configuration tools")
    check = _command(
        tools.add_subparsers(dest="action", metavar="ACTION"),
        "check",
        "validate a configuration file and exit",
    )
    check.add_argument("file")
    _command(commands, "migrate", "apply database migrations and exit")
    gc = _command(commands, "gc", "collect garbage once and exit")
    gc.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    cli_auth.add_commands(_command, commands)
    cli_pypi.add_commands(_command, commands)
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
        if command in cli_auth.COMMANDS:
            return asyncio.run(cli_auth.run(config, args))
        if command in cli_pypi.COMMANDS:
            return asyncio.run(cli_pypi.run(config, args))
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
