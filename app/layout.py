"""The storage layout: every key the service writes is built here, and nowhere else.

::

    blobs/sha256/<ab>/<64 hex>            one object per distinct content; <ab> is the
                                          digest's first two hex digits (ContentStore)
    uploads/<upload>/<offset>-<nonce>     one staged part of a chunked upload, <offset>
                                          zero-padded to 20 digits so parts list in order;
                                          the nonce keeps two racing appends apart
                                          (ContentStore.stage; the OCI format's sessions)
    tmp/<uuid>                            an ingest whose digest is not known yet, moved
                                          to blobs/ once hashed (ContentStore.ingest)

The collector reaps ``tmp/`` by age and the formats reap ``uploads/`` through the
content store (a part lives as long as its session). Keys use ``check_key``'s
alphabet only, so the drivers' own names (the filesystem's ``.incoming/``) can never
collide with one.

A new room (a later format's staging, say) is a prefix here, a function building its
keys and a line in the tree above; whoever reaps it asks this module for the prefix.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines import Digest

BLOBS = "blobs/"
UPLOADS = "uploads/"
TMP = "tmp/"

_SHA256 = "sha256:"


def blob_key(digest: Digest | str) -> str:
    """Where the blob with this sha256 (``sha256:<hex>``, or the bare hex) lives."""
    hexpart = str(digest).removeprefix(_SHA256)
    return f"{BLOBS}sha256/{hexpart[:2]}/{hexpart}"


def part_key(upload: str, offset: int) -> str:
    """A fresh key for a part of ``upload`` starting at ``offset``."""
    return f"{UPLOADS}{upload}/{offset:020d}-{uuid.uuid4().hex[:8]}"


def upload_of(key: str) -> str | None:
    """The upload a key under ``uploads/`` was staged for; None for any other key."""
    if not key.startswith(UPLOADS):
        return None
    upload, slash, _part = key[len(UPLOADS) :].partition("/")
    return upload if slash and upload else None


def temp_key() -> str:
    """A fresh key under ``tmp/``."""
    return f"{TMP}{uuid.uuid4().hex}"
