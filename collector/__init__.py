"""Garbage collection, safe under live traffic (the design card's ``gc/``).

Named ``collector`` because a top-level package called ``gc`` would be shadowed by
CPython's built-in ``gc`` module. One :class:`Collector` serves both uses: a
background task in the server (``gc.enabled``; :mod:`collector.scheduler`) and a
standalone run (``artifactapi gc``, ``python -m collector``; :mod:`collector.standalone`).

A run, under the database lease that lets one collector work at a time:

1. each format deletes its own garbage (OCI: abandoned upload sessions and their
   staged objects, untagged manifests where a repository opts in);
2. blobs an earlier run marked but did not finish are finished;
3. orphaned blobs are marked, deleted and dropped (:mod:`collector.blobs`);
4. ``tmp/`` objects of ingests that died are reaped.
"""

from collector.report import Report
from collector.run import Collector

__all__ = ["Collector", "Report"]
