"""Passwords, hashed with argon2id (argon2-cffi's defaults: RFC 9106's second
recommended profile) and verified off the event loop: one check costs tens of
milliseconds of CPU by design."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _stand_in() -> str:
    # Verified against when the user does not exist, so an unknown name takes as long
    # as a wrong password and the answer's timing tells nobody which names exist.
    return _HASHER.hash("no user has this password")


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _stand_in(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (None: no such user, or one
    with no password; checked all the same, and False)."""
    return await asyncio.to_thread(_verify, stored, password)
