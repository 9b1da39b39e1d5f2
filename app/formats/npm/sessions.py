"""npm's web login sessions, in the database (``migrations/``), so that the CLI's
first POST, the browser's page and the CLI's polls may each reach another replica.

A session has two secrets: its id, in the login URL the browser opens (it lets
whoever has it sign in, which gives them nothing they did not have), and the done
secret, in the done URL only the CLI sees, which collects the token. The row keeps
the done secret's sha256 and, once someone signed in, their name; the token itself
is made on the first poll that presents the secret, and the row goes with it, so no
token secret is ever stored, and a second poll finds nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from app.formats.api import Records

TTL = 600.0  # seconds a session may wait for its sign-in and the CLI's poll

Waiting = Literal["unknown", "expired", "pending"]


@dataclass(frozen=True, slots=True)
class Opened:
    session: str  # the login URL's
    secret: str  # the done URL's, shown once


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class LoginSessions(Records):
    async def open(self, repository_id: int) -> Opened:
        now = time.time()
        opened = Opened(secrets.token_urlsafe(24), secrets.token_urlsafe(32))
        async with self.db.transaction() as tx:
            # Expired sessions go whenever a new one comes: no sweep to schedule.
            await tx.execute("DELETE FROM npm_login_sessions WHERE expires_at <= $1", now)
            await tx.execute(
                "INSERT INTO npm_login_sessions (id, repository_id, secret_digest, principal,"
                " created_at, expires_at) VALUES ($1, $2, $3, NULL, $4, $5)",
                opened.session, repository_id, _digest(opened.secret), now, now + TTL,
            )  # fmt: skip
        return opened

    async def pending(self, repository_id: int, session: str) -> bool:
        """Whether ``session`` is open and nobody signed in to it yet."""
        found = await self.db.fetchval(
            "SELECT COUNT(*) FROM npm_login_sessions WHERE id = $1 AND repository_id = $2"
            " AND principal IS NULL AND expires_at > $3",
            session, repository_id, time.time(),
        )  # fmt: skip
        return bool(found)

    async def sign_in(self, repository_id: int, session: str, principal: str) -> bool:
        """Give a pending session its user; False if it is not pending (any more)."""
        count = await self.db.execute(
            "UPDATE npm_login_sessions SET principal = $3 WHERE id = $1 AND repository_id = $2"
            " AND principal IS NULL AND expires_at > $4",
            session, repository_id, principal, time.time(),
        )  # fmt: skip
        return count > 0

    async def collect(self, repository_id: int, session: str, secret: str) -> SignedIn | Waiting:
        """The CLI's poll: who signed in (the session is gone after this answer), or
        why there is nobody yet or ever."""
        row = await self.db.fetchrow(
            "SELECT secret_digest, principal, expires_at FROM npm_login_sessions"
            " WHERE id = $1 AND repository_id = $2",
            session, repository_id,
        )  # fmt: skip
        if row is None or not hmac.compare_digest(row["secret_digest"], _digest(secret)):
            return "unknown"
        if row["expires_at"] <= time.time():
            await self.db.execute("DELETE FROM npm_login_sessions WHERE id = $1", session)
            return "expired"
        if row["principal"] is None:
            return "pending"
        # Two polls at once (two replicas): the one whose delete counts collects.
        taken = await self.db.execute(
            "DELETE FROM npm_login_sessions WHERE id = $1 AND principal IS NOT NULL", session
        )
        return SignedIn(row["principal"]) if taken else "unknown"
