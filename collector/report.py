"""What one collection did: objects and bytes freed per kind, errors, time taken."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Each error is logged; only the first few are kept in the stored report.
KEPT_ERRORS = 20


@dataclass
class Freed:
    objects: int = 0
    bytes: int = 0


@dataclass
class Report:
    dry_run: bool
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    skipped: str | None = None  # why nothing ran (another collector holds the lease)
    freed: dict[str, Freed] = field(default_factory=dict)
    error_count: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, kind: str, objects: int, size: int) -> None:
        if not objects:
            return
        entry = self.freed.setdefault(kind, Freed())
        entry.objects += objects
        entry.bytes += size

    def error(self, kind: str, error: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append({"kind": kind, "error": f"{type(error).__name__}: {error}"})

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "freed": {k: {"objects": v.objects, "bytes": v.bytes} for k, v in self.freed.items()},
            "error_count": self.error_count,
            "errors": self.errors,
        }

    def lines(self) -> list[str]:
        """The report for a terminal."""
        if self.skipped:
            return [f"skipped: {self.skipped}"]
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"{kind:<10} {verb} {entry.objects} objects, {entry.bytes} bytes"
            for kind, entry in sorted(self.freed.items())
        ] or ["nothing deleted" if not self.dry_run else "nothing to delete"]
        lines.append(f"took {self.seconds:.2f} s, {self.error_count} errors")
        lines += [f"  {e['kind']}: {e['error']}" for e in self.errors]
        return lines
