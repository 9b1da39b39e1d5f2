"""API tokens: random, shown once, kept only as their sha256.

A token is ``aat_`` and 43 URL-safe characters (256 random bits), so a fast hash
is as safe to store as a slow one (nothing to guess at 2^-256), and the first
twelve characters (``aat_`` + 8) are the prefix people recognise it by in lists.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

MARK = "aat_"
PREFIX_LENGTH = 12
_SHAPE = re.compile(r"^aat_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class NewToken:
    secret: str  # to show once, never stored
    prefix: str
    digest: str


def new_token() -> NewToken:
    secret = MARK + secrets.token_urlsafe(32)
    return NewToken(secret, secret[:PREFIX_LENGTH], token_digest(secret))


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_token(value: str) -> bool:
    """Whether ``value`` has a token's shape (a password never needs to)."""
    return _SHAPE.match(value) is not None
