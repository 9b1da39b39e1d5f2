"""``artifactapi serve`` as a real process, for the tests that need one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def log_of(directory: Path) -> str:
    """What a server started by :func:`serving` in ``directory`` logged (its stderr)."""
    return (directory / "stderr.log").read_text(errors="replace")


@contextmanager
def serving(directory: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``artifactapi serve`` in ``directory`` (so ``./artifactapi.yaml`` there is
    its configuration); yield it and its base URL; stop it with SIGTERM.

    Its log goes to a file, not a pipe: a busy server would fill a pipe nobody reads
    until the end, and block.
    """
    with open(directory / "stderr.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", *args],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.startswith("artifactapi: created the user admin"):  # the first start's
            line = process.stdout.readline()
        if "listening on http://" not in line:
            process.wait(timeout=30)
            raise RuntimeError(f"artifactapi did not start:\n{log_of(directory)[-3000:]}")
        yield process, line.split("listening on ")[1].split()[0]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
