"""Errors a stage raises into whoever consumes the stream."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: the stream was rejected; nothing it fed may become visible."""


class TooLarge(PipelineError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds the limit of {limit} bytes")
        self.limit = limit


class DigestMismatch(PipelineError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"content digest {actual} does not match the expected {expected}")
        self.expected = expected
        self.actual = actual
