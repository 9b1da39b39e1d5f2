"""The command line: global options before or after the command, the later one winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import EXIT_CONFIG, _parser, main

# Each command as typed, with what must follow its name.
COMMANDS = [["serve"], ["gc"], ["gc", "--dry-run"], ["migrate"], ["config", "check", "f.yaml"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_global_options_follow_any_command(command: list[str]) -> None:
    args = _parser().parse_args([*command, "--config", "after.yaml", "--debug"])
    assert args.config == "after.yaml" and args.debug is True


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_global_options_before_the_command_still_count(command: list[str]) -> None:
    args = _parser().parse_args(["--config", "before.yaml", "--debug", *command])
    assert args.config == "before.yaml" and args.debug is True
    plain = _parser().parse_args(command)
    assert plain.config is None and plain.debug is False


def test_the_value_after_the_command_wins() -> None:
    args = _parser().parse_args(["--config", "a.yaml", "serve", "--config", "b.yaml"])
    assert args.config == "b.yaml" and args.debug is False
    args = _parser().parse_args(
        ["--config", "a.yaml", "config", "--config", "b.yaml", "check", "f"]
    )
    assert args.config == "b.yaml" and args.file == "f"
    args = _parser().parse_args(["--debug", "migrate"])  # not repeated: kept, not reset
    assert args.debug is True


def test_command_options_and_globals_mix() -> None:
    args = _parser().parse_args(["serve", "--port", "9000", "--config", "c.yaml", "--host", "h"])
    assert (args.port, args.config, args.host) == (9000, "c.yaml", "h")


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "artifactapi.yaml"
    path.write_text(
        f"database: {{url: 'sqlite:///{tmp_path / 'meta.db'}'}}\n"
        f"storage: {{driver: filesystem, root: '{tmp_path / 'blobs'}'}}\n"
        "cache: {url: 'memory://'}\n"
    )
    return path


def test_migrate_reads_the_config_given_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_config(tmp_path)
    assert main(["migrate", "--config", str(path)]) == 0
    assert "applied migrations" in capsys.readouterr().out
    assert (tmp_path / "meta.db").exists()  # the file's database, not ./data's


def test_serve_reads_the_config_given_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: not-a-port}\n")
    # Refused as a configuration (not as a command line) before anything starts.
    assert main(["serve", "--config", str(bad)]) == EXIT_CONFIG
    assert "invalid configuration" in capsys.readouterr().err
