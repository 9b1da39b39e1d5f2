"""Every query over the auth tables (``migrations/`` beside this file), written once
for both databases. Anything that changes who may do what bumps ``auth_version``
in the same transaction, which is how every replica learns to drop what it cached."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from app.backends.metadata import Conflict, Track
from app.backends.metadata.base import Row, SqlDriver
from app.backends.metadata.records import Records

TRACK = Track("auth", resources.files(__package__) / "migrations")


@dataclass(frozen=True, slots=True)
class PrincipalRow:
    id: int
    name: str
    kind: str  # user | service
    password_hash: str | None
    admin: bool
    disabled: bool
    description: str

    @classmethod
    def of(cls, row: Row) -> PrincipalRow:
        return cls(
            int(row["id"]), row["name"], row["kind"], row["password_hash"],
            bool(row["admin"]), bool(row["disabled"]), row["description"],
        )  # fmt: skip

    def public(self) -> dict[str, Any]:
        """What any endpoint may show of a principal: never the password's hash."""
        return {
            "name": self.name, "kind": self.kind, "admin": self.admin,
            "disabled": self.disabled, "description": self.description,
            "password": self.password_hash is not None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    principal: PrincipalRow
    prefix: str
    scopes: list[dict[str, Any]]
    description: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    def usable(self, now: float) -> bool:
        return (
            self.revoked_at is None
            and (self.expires_at is None or self.expires_at > now)
            and not self.principal.disabled
        )

    def public(self) -> dict[str, Any]:
        """What any endpoint may show of a token: everything but the secret, which is
        not stored anywhere to show."""
        return {
            "id": self.id, "owner": self.principal.name, "prefix": self.prefix,
            "scopes": self.scopes, "description": self.description,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "last_used_at": self.last_used_at, "revoked": self.revoked_at is not None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    kid: str
    algorithm: str
    private_pem: str
    public_pem: str
    created_at: float
    retired_at: float | None

    def public(self) -> dict[str, Any]:
        """All but the private key."""
        return {
            "kid": self.kid, "algorithm": self.algorithm, "public_pem": self.public_pem,
            "created_at": self.created_at, "retired": self.retired_at is not None,
            "retired_at": self.retired_at,
        }  # fmt: skip


_PRINCIPAL = "p.id, p.name, p.kind, p.password_hash, p.admin, p.disabled, p.description"
_TOKEN = (
    "t.id AS token_id, t.prefix, t.scopes, t.description AS token_description, t.created_at,"
    " t.expires_at, t.last_used_at, t.revoked_at"
)


class AuthRecords(Records):
    # -- the version every replica polls --------------------------------------------

    async def version(self) -> int:
        return int(await self.db.fetchval("SELECT version FROM auth_version WHERE id = 1"))

    @staticmethod
    async def _changed(tx: SqlDriver) -> None:
        await tx.execute("UPDATE auth_version SET version = version + 1 WHERE id = 1")

    # -- users and service accounts -------------------------------------------------

    async def count_principals(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM auth_principals"))

    async def create_principal(
        self,
        name: str,
        kind: str,
        password_hash: str | None,
        admin: bool = False,
        description: str = "",
        only_if_none: bool = False,
    ) -> PrincipalRow | None:
        """The new principal; :class:`Conflict` if the name is taken. ``only_if_none``:
        None unless it is the very first (two replicas starting at once make one)."""
        now = time.time()
        async with self.db.transaction() as tx:
            if only_if_none and await tx.fetchval("SELECT COUNT(*) FROM auth_principals"):
                return None
            inserted = await tx.execute(
                "INSERT INTO auth_principals (name, kind, password_hash, admin, disabled,"
                " description, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO NOTHING",
                name, kind, password_hash, admin, False, description, now,
            )  # fmt: skip
            if not inserted:
                if only_if_none:
                    return None
                raise Conflict(f"{name!r} exists")
            await self._changed(tx)
            row = await tx.fetchrow(
                f"SELECT {_PRINCIPAL} FROM auth_principals p WHERE p.name = $1", name
            )
        assert row is not None
        return PrincipalRow.of(row)

    async def principal(self, name: str) -> PrincipalRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_PRINCIPAL} FROM auth_principals p WHERE p.name = $1", name
        )
        return PrincipalRow.of(row) if row else None

    async def principals(self) -> list[PrincipalRow]:
        rows = await self.db.fetch(f"SELECT {_PRINCIPAL} FROM auth_principals p ORDER BY p.name")
        return [PrincipalRow.of(r) for r in rows]

    async def update_principal(self, name: str, **fields: Any) -> bool:
        """Set ``password_hash``, ``admin``, ``disabled`` or ``description``."""
        allowed = {"password_hash", "admin", "disabled", "description"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_principal: fields among {sorted(allowed)}")
        names = sorted(fields)
        sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
        async with self.db.transaction() as tx:
            count = await tx.execute(
                f"UPDATE auth_principals SET updated_at = $2, {sets} WHERE name = $1",
                name, time.time(), *(fields[n] for n in names),
            )  # fmt: skip
            if count:
                await self._changed(tx)
        return count > 0

    async def delete_principal(self, name: str) -> bool:
        async with self.db.transaction() as tx:
            count = await tx.execute("DELETE FROM auth_principals WHERE name = $1", name)
            if count:
                await self._changed(tx)
        return count > 0

    # -- groups -----------------------------------------------------------------------

    async def create_group(self, name: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_groups (name, created_at) VALUES ($1, $2)", name, time.time()
            )
            await self._changed(tx)

    async def set_member(self, group: str, principal: str, member: bool) -> bool:
        """Add or remove ``principal`` in ``group``; False if either is unknown."""
        async with self.db.transaction() as tx:
            ids = await tx.fetchrow(
                "SELECT g.id AS g, p.id AS p FROM auth_groups g, auth_principals p"
                " WHERE g.name = $1 AND p.name = $2",
                group, principal,
            )  # fmt: skip
            if ids is None:
                return False
            if member:
                await tx.execute(
                    "INSERT INTO auth_members (group_id, principal_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    ids["g"], ids["p"],
                )  # fmt: skip
            else:
                await tx.execute(
                    "DELETE FROM auth_members WHERE group_id = $1 AND principal_id = $2",
                    ids["g"], ids["p"],
                )  # fmt: skip
            await self._changed(tx)
        return True

    async def groups(self) -> dict[str, list[str]]:
        """Every group with its members' names."""
        rows = await self.db.fetch(
            "SELECT g.name AS group_name, p.name AS member FROM auth_groups g"
            " LEFT JOIN auth_members m ON m.group_id = g.id"
            " LEFT JOIN auth_principals p ON p.id = m.principal_id ORDER BY g.name, p.name"
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            members = found.setdefault(row["group_name"], [])
            if row["member"] is not None:
                members.append(row["member"])
        return found

    async def groups_of(self, principal_id: int) -> frozenset[str]:
        rows = await self.db.fetch(
            "SELECT g.name FROM auth_groups g JOIN auth_members m ON m.group_id = g.id"
            " WHERE m.principal_id = $1",
            principal_id,
        )
        return frozenset(r["name"] for r in rows)

    async def delete_group(self, name: str) -> bool:
        async with self.db.transaction() as tx:
            count = await tx.execute("DELETE FROM auth_groups WHERE name = $1", name)
            if count:
                await self._changed(tx)
        return count > 0

    # -- tokens -----------------------------------------------------------------------

    async def create_token(
        self,
        principal_id: int,
        prefix: str,
        digest: str,
        scopes: list[dict[str, Any]],
        description: str,
        expires_at: float | None,
    ) -> int:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_tokens (principal_id, prefix, digest, scopes, description,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                principal_id, prefix, digest, json.dumps(scopes), description, time.time(),
                expires_at,
            )  # fmt: skip
            token_id = await tx.fetchval("SELECT id FROM auth_tokens WHERE digest = $1", digest)
        return int(token_id)

    async def token_by_digest(self, digest: str) -> TokenRow | None:
        return await self._one_token("t.digest", digest)

    async def tokens(self, owner: str | None = None) -> list[TokenRow]:
        where, args = ("WHERE p.name = $1", [owner]) if owner is not None else ("", [])
        rows = await self.db.fetch(
            f"SELECT {_PRINCIPAL}, {_TOKEN} FROM auth_tokens t"
            f" JOIN auth_principals p ON p.id = t.principal_id {where} ORDER BY t.id",
            *args,
        )
        return [_token(r) for r in rows]

    async def token(self, token_id: int) -> TokenRow | None:
        return await self._one_token("t.id", token_id)

    async def _one_token(self, column: str, value: object) -> TokenRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_PRINCIPAL}, {_TOKEN} FROM auth_tokens t"
            f" JOIN auth_principals p ON p.id = t.principal_id WHERE {column} = $1",
            value,
        )
        return _token(row) if row else None

    async def revoke_token(self, token_id: int) -> bool:
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "UPDATE auth_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                token_id, time.time(),
            )  # fmt: skip
            if count:
                await self._changed(tx)
        return count > 0

    async def tokens_used(self, used: dict[int, float]) -> None:
        """Record when tokens were last used (in batches, so a request costs no write)."""
        async with self.db.transaction() as tx:
            await tx.executemany(
                "UPDATE auth_tokens SET last_used_at = $2 WHERE id = $1",
                sorted(used.items()),
            )

    # -- permissions granted through the API -----------------------------------------

    async def grant(self, subject: str, repository: str, actions: Sequence[str]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_permissions (subject, repository, actions, created_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (subject, repository)"
                " DO UPDATE SET actions = excluded.actions",
                subject, repository, json.dumps(sorted(set(actions))), time.time(),
            )  # fmt: skip
            await self._changed(tx)

    async def revoke(self, subject: str, repository: str) -> bool:
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "DELETE FROM auth_permissions WHERE subject = $1 AND repository = $2",
                subject, repository,
            )  # fmt: skip
            if count:
                await self._changed(tx)
        return count > 0

    async def permissions(self, subjects: Iterable[str] | None = None) -> list[Row]:
        """Granted permissions (of ``subjects`` only, if given), actions as lists."""
        if subjects is None:
            rows = await self.db.fetch(
                "SELECT subject, repository, actions FROM auth_permissions"
                " ORDER BY subject, repository"
            )
        else:
            rows = await self.db.fetch(
                "SELECT subject, repository, actions FROM auth_permissions"
                f" WHERE subject {self.one_of('$1')} ORDER BY subject, repository",
                self.as_list(sorted(subjects)),
            )
        return [{**r, "actions": json.loads(r["actions"])} for r in rows]

    # -- the keys that sign OCI bearer tokens ----------------------------------------

    async def signing_keys(self) -> list[SigningKeyRow]:
        rows = await self.db.fetch(
            "SELECT kid, algorithm, private_pem, public_pem, created_at, retired_at"
            " FROM auth_signing_keys ORDER BY created_at, kid"
        )
        return [SigningKeyRow(**r) for r in rows]

    async def add_signing_key(self, key: SigningKeyRow) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_signing_keys (kid, algorithm, private_pem, public_pem,"
                " created_at) VALUES ($1, $2, $3, $4, $5)",
                key.kid, key.algorithm, key.private_pem, key.public_pem, key.created_at,
            )  # fmt: skip
            await self._changed(tx)

    async def retire_signing_key(self, kid: str) -> bool:
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "UPDATE auth_signing_keys SET retired_at = $2"
                " WHERE kid = $1 AND retired_at IS NULL",
                kid, time.time(),
            )  # fmt: skip
            if count:
                await self._changed(tx)
        return count > 0


def _token(row: Row) -> TokenRow:
    return TokenRow(
        id=int(row["token_id"]),
        principal=PrincipalRow.of(row),
        prefix=row["prefix"],
        scopes=json.loads(row["scopes"]),
        description=row["token_description"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )
