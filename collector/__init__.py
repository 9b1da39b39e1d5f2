"""Garbage collection (the design card's ``gc/``).

Named ``collector`` because a top-level package called ``gc`` would be shadowed
by CPython's built-in ``gc`` module. The collection itself (orphaned blobs,
abandoned uploads, untagged manifests, cache eviction) is issue #4.
"""
