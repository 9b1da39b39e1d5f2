"""Digests: strict parsing and incremental computation of several at once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Hex length of each algorithm we accept. sha256 names every blob; sha512 is
# allowed by the OCI spec; sha1 and md5 are what older formats publish.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}

# Computed while streaming but never a digest a client names as ``algorithm:hex``:
# PyPI's uploads carry a BLAKE2b of 256 bits, which hashlib only makes with an argument.
STREAMED: dict[str, Callable[[], Any]] = {
    "blake2b_256": lambda: hashlib.blake2b(digest_size=32),
}

_HEX = re.compile(r"^[0-9a-f]+$")


class InvalidDigest(ValueError):
    def __init__(self, text: str, why: str) -> None:
        super().__init__(f"invalid digest {text[:200]!r}: {why}")
        self.text = text


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(text: str, allowed: tuple[str, ...] = ("sha256", "sha512")) -> Digest:
    """Parse ``algorithm:hex`` exactly: known algorithm, lowercase hex of its length."""
    algorithm, sep, hexpart = text.partition(":")
    if not sep:
        raise InvalidDigest(text, "expected algorithm:hex")
    if algorithm not in allowed:
        raise InvalidDigest(text, f"unsupported algorithm {algorithm[:20]!r}")
    if len(hexpart) != ALGORITHMS[algorithm] or not _HEX.match(hexpart):
        raise InvalidDigest(text, f"expected {ALGORITHMS[algorithm]} lowercase hex digits")
    return Digest(algorithm, hexpart)


class Digests:
    """Running hashes of one stream: sha256 (unless told otherwise), others
    (:data:`ALGORITHMS`, :data:`STREAMED`) on request."""

    def __init__(self, *algorithms: str, sha256: bool = True) -> None:
        # sha256=False: a stage beside the content store's ingest, which hashes it already.
        names = dict.fromkeys((*(("sha256",) if sha256 else ()), *algorithms))
        unknown = [a for a in names if a not in ALGORITHMS and a not in STREAMED]
        if unknown:
            raise ValueError(f"unsupported digest algorithm(s): {unknown}")
        self._hashes = {
            name: STREAMED[name]() if name in STREAMED else hashlib.new(name) for name in names
        }
        self.size = 0

    def update(self, chunk: bytes) -> None:
        # hashlib releases the GIL for buffers over 2 KiB, so a storage write in
        # another thread proceeds meanwhile.
        for h in self._hashes.values():
            h.update(chunk)
        self.size += len(chunk)

    def updaters(self) -> list[Callable[[bytes], None]]:
        """Each hash's own update, for a caller that feeds them apart (in threads);
        it counts the bytes with :meth:`counted`."""
        return [h.update for h in self._hashes.values()]

    def counted(self, size: int) -> None:
        self.size += size

    def hexdigest(self, algorithm: str = "sha256") -> str:
        return self._hashes[algorithm].hexdigest()

    def digest(self, algorithm: str = "sha256") -> Digest:
        return Digest(algorithm, self.hexdigest(algorithm))

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._hashes)
