"""How far a server's memory grew while it took an upload: the peak RSS of its process tree.

Two readings of the same thing, the larger one counts:

* each process's high-water mark (``VmHWM``), reset to its current RSS when the watch
  starts by writing 5 to ``/proc/<pid>/clear_refs`` (root, or the same user): exact per
  process, and the sum over the tree is an upper bound of the tree's peak;
* the tree's summed ``VmRSS``, sampled every few milliseconds by a thread: what was
  resident at once (a short spike between two samples can be missed; the first reading
  does not miss it).

Growth is measured from the tree's RSS when the watch started, so a server that keeps
what an earlier upload made it allocate shows less in later runs: the benchmark reports
the worst run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import tree_pids

INTERVAL = 0.005


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
    return fields


def _tree_rss(root: int) -> int:
    return sum(_status(pid).get("VmRSS", 0) for pid in tree_pids(root))


@dataclass
class Growth:
    sampled: int = 0  # bytes, summed VmRSS peak minus its start
    high_water: int | None = None  # bytes, summed VmHWM minus the start; None: no reset

    @property
    def bytes(self) -> int:
        return max(self.sampled, self.high_water or 0)


class RssWatch:
    def __init__(self, root: int) -> None:
        self._root = root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._baseline = 0
        self._peak = 0
        self._reset: dict[int, int] = {}  # pid: RSS when its high-water mark was reset

    def __enter__(self) -> RssWatch:
        for pid in tree_pids(self._root):
            rss = _status(pid).get("VmRSS", 0)
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                continue
            self._reset[pid] = rss
        self._baseline = self._peak = _tree_rss(self._root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _tree_rss(self._root))
            time.sleep(INTERVAL)
        self._peak = max(self._peak, _tree_rss(self._root))

    def growth(self) -> Growth:
        """After the block: the growth as both readings saw it."""
        result = Growth(sampled=max(0, self._peak - self._baseline))
        pids = tree_pids(self._root)
        if self._reset and all(pid in self._reset for pid in pids):
            peaks = [_status(pid).get("VmHWM", 0) - self._reset[pid] for pid in pids]
            result.high_water = max(0, sum(peaks))
        return result
