"""Making users, service accounts and tokens: what the CLI, the API and the first
start share."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

from app.auth.passwords import hash_password
from app.auth.permissions import ACTIONS
from app.auth.records import AuthRecords, PrincipalRow, TokenRow
from app.auth.tokens import new_token
from app.config import AuthConfig, principal_name


async def create_principal(
    records: AuthRecords,
    name: str,
    password: str | None = None,
    admin: bool = False,
    kind: str = "user",
    description: str = "",
) -> PrincipalRow:
    """A user (or, ``kind="service"``, a service account: tokens only, no password);
    ValueError for a bad name, the database's Conflict if it exists."""
    principal_name(name)
    hashed = await asyncio.to_thread(hash_password, password) if password else None
    row = await records.create_principal(name, kind, hashed, admin, description)
    assert row is not None
    return row


async def set_password(records: AuthRecords, name: str, password: str) -> bool:
    hashed = await asyncio.to_thread(hash_password, password)
    return await records.update_principal(name, password_hash=hashed)


def checked_scopes(scopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"repository": pattern, "actions": [...]}]``, or ValueError saying what is wrong."""
    checked = []
    for index, scope in enumerate(scopes):
        repository, actions = scope.get("repository"), scope.get("actions")
        if not isinstance(repository, str) or not repository or len(repository) > 128:
            raise ValueError(f"scopes[{index}].repository: a repository name or pattern")
        if not isinstance(actions, list) or not actions or set(actions) - set(ACTIONS):
            raise ValueError(f"scopes[{index}].actions: a list of {', '.join(ACTIONS)}")
        checked.append({"repository": repository, "actions": sorted(set(actions))})
    return checked


def checked_grant(subject: str, repository: str, actions: list[str]) -> list[str]:
    """The grant's actions, sorted; ValueError saying what is wrong with it."""
    kind, _, name = subject.partition(":")
    if kind not in ("user", "group"):
        raise ValueError("subject: user:NAME or group:NAME")
    try:
        principal_name(name)
    except ValueError as exc:
        raise ValueError(f"subject: {exc}") from None
    if not repository or len(repository) > 128:
        raise ValueError("repository: a repository name, a glob or *")
    if not actions or not all(isinstance(a, str) for a in actions) or set(actions) - set(ACTIONS):
        raise ValueError(f"actions: a list of {', '.join(ACTIONS)}")
    return sorted(set(actions))


async def all_permissions(records: AuthRecords, config: AuthConfig) -> dict[str, Any]:
    """The grants in the database, and those the configuration declares (read-only)."""
    configured = [
        {"repository": p.repository, "users": list(p.users), "groups": list(p.groups),
         "actions": list(p.actions)}
        for p in config.permissions
    ]  # fmt: skip
    return {"granted": await records.permissions(), "configured": configured}


async def create_token(
    records: AuthRecords,
    owner: str,
    scopes: list[dict[str, Any]] | None = None,
    description: str = "",
    expires_in: float | None = None,
) -> tuple[str, TokenRow]:
    """A new token for ``owner``: its secret (to show once) and its row. LookupError
    if the owner does not exist."""
    principal = await records.principal(owner)
    if principal is None:
        raise LookupError(f"no user or service account {owner!r}")
    token = new_token()
    expires_at = time.time() + expires_in if expires_in is not None else None
    token_id = await records.create_token(
        principal.id, token.prefix, token.digest, checked_scopes(scopes or []), description,
        expires_at,
    )  # fmt: skip
    row = await records.token(token_id)
    assert row is not None
    return token.secret, row


async def first_admin(records: AuthRecords, password_file: str) -> str | None:
    """On the very first start (no users at all): an ``admin`` with a random password,
    printed once and written to ``password_file`` (owner-only); None on any later
    start, or on the replica that lost the race to make it."""
    if await records.count_principals():
        return None
    password = secrets.token_urlsafe(18)
    hashed = await asyncio.to_thread(hash_password, password)
    row = await records.create_principal(
        "admin", "user", hashed, admin=True, description="made at first start", only_if_none=True
    )
    if row is None:
        return None
    where = ""
    if password_file:
        path = Path(password_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # also if the file was there with other modes
            out.write(password + "\n")
        where = f" (also written to {path}, readable by this user only)"
    # Printed, never logged: log lines are collected and kept; this is shown once.
    print(f"artifactapi: created the user admin with the password {password}{where}", flush=True)
    return password
