"""Mutation testing of the core modules: ``make mutate`` (not in CI; minutes per module).

Each module is mutated against its own fast tests only (its unit tests and the
integration tests of what it serves, embedded shape), so a score says how well those
tests tell a right module from a wrong one. mutmut reads one configuration from the
working directory, so each module gets a scratch directory under ``.mutate/`` that links
the code and tests and holds a pyproject.toml with its own ``[tool.mutmut]``; mutmut keeps
its results there, and a second run retests only what changed.

    python -m tests.mutate                      # every module
    python -m tests.mutate pipelines/ app/config.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutate"
LINKED = ("app", "pipelines", "collector", "tests")

# module (a package ends with "/") -> the tests that must notice it changed
MODULES: dict[str, tuple[str, ...]] = {
    "pipelines/": ("tests/unit/test_pipelines.py", "tests/integration/test_cas.py"),
    "app/formats/oci/names.py": (
        "tests/unit/test_oci_manifests.py",
        "tests/integration/test_oci_manifests.py",
        "tests/integration/test_oci_manifest_limits.py",
        "tests/integration/test_oci_blobs.py",
    ),
    "app/formats/oci/manifests.py": (
        "tests/unit/test_oci_manifests.py",
        "tests/integration/test_oci_manifests.py",
        "tests/integration/test_oci_manifest_kinds.py",
        "tests/integration/test_oci_manifest_limits.py",
    ),
    "app/http.py": (
        "tests/unit/test_http.py",
        "tests/integration/test_generic.py",
        "tests/integration/test_oci_blobs.py",
    ),
    "app/config.py": ("tests/unit/test_config.py", "tests/unit/test_http.py"),
}
# Every run: the embedded shape only (no services to start), and no cache files written
# into the linked tests.
PYTEST_ARGS = ["-k", "not scale-out", "-p", "no:cacheprovider"]


def prepare(module: str) -> Path:
    """The module's scratch directory: links to the code and tests, and its config."""
    where = SCRATCH / module.strip("/").replace("/", "-")
    where.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = where / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)
    pattern = module + "*" if module.endswith("/") else module
    settings = {
        "source_paths": ["app", "pipelines", "collector"],
        "only_mutate": [pattern],
        "pytest_add_cli_args_test_selection": list(MODULES[module]),
        "pytest_add_cli_args": PYTEST_ARGS,
        # git would look at the worktree, not at this directory
        "use_git_change_detection": False,
    }
    # The project's own pytest settings (asyncio mode, timeouts) apply inside mutmut too.
    lines = [(ROOT / "pyproject.toml").read_text(encoding="utf-8"), "", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    (where / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return where


def measure(module: str, jobs: int) -> dict[str, int]:
    where = prepare(module)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    subprocess.run([mutmut, "run", "--max-children", str(jobs)], cwd=where, check=True)
    subprocess.run([mutmut, "export-cicd-stats"], cwd=where, check=True)
    stats: dict[str, int] = json.loads((where / "mutants" / "mutmut-cicd-stats.json").read_text())
    return stats


def score(stats: dict[str, int]) -> float:
    """mutmut's own: killed (or timed out) of the mutants tested."""
    tested = stats["total"] - stats["skipped"]
    return 100.0 * (stats["killed"] + stats["timeout"]) / tested if tested else 0.0


def main(argv: list[str]) -> int:
    modules = argv or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    jobs = int(os.environ.get("MUTATE_JOBS", os.cpu_count() or 1))
    results = {module: measure(module, jobs) for module in modules}
    print(f"\n{'module':<32} {'killed':>7} {'survived':>9} {'no tests':>9} {'score':>7}")
    for module, stats in results.items():
        killed = stats["killed"] + stats["timeout"]
        print(
            f"{module:<32} {killed:>7} {stats['survived']:>9} {stats['no_tests']:>9}"
            f" {score(stats):>6.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
