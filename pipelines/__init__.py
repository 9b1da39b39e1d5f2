"""Streaming stages for request and upstream bodies.

Every stage is a plain async generator that takes an ``AsyncIterable[bytes]`` and
yields ``bytes``, so a pipeline reads top to bottom::

    stream = limited(body, max_size)
    stream = hashed(stream, digests)
    stream = verified(stream, digests, expected)
    size = await storage.put(key, stream)

Nothing here imports the application: stages only know bytes, hashes and errors.
"""

from pipelines.digest import ALGORITHMS, STREAMED, Digest, Digests, InvalidDigest, parse_digest
from pipelines.errors import DigestMismatch, PipelineError, TooLarge
from pipelines.stages import drain, hashed, hashed_aside, limited, teed, verified

__all__ = [
    "ALGORITHMS",
    "STREAMED",
    "Digest",
    "DigestMismatch",
    "Digests",
    "InvalidDigest",
    "PipelineError",
    "TooLarge",
    "drain",
    "hashed",
    "hashed_aside",
    "limited",
    "parse_digest",
    "teed",
    "verified",
]
