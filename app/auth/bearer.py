"""OCI bearer tokens (the docker token spec): short-lived ES256 JWTs signed by keys
that live in the shared database, so a token one replica issued verifies on any.

Rotation: a new key is added and signs from then on (the newest unretired key
signs); older keys keep verifying what they signed until an administrator retires
them, after which their tokens are refused everywhere. No key is ever made per
process: the first replica to need one stores it, and a second made at the same
moment by another replica is simply another valid key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.auth.records import AuthRecords, SigningKeyRow

ALGORITHM = "ES256"
LEEWAY = 5.0  # seconds of clock difference between replicas


class InvalidBearer(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str  # "" for an anonymous token
    access: tuple[tuple[str, str, frozenset[str]], ...]  # (type, name, actions)
    expires: float
    token_id: int | None = None  # the API token it was bought with, if any


def new_signing_key() -> SigningKeyRow:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # libtrust's key id shape (what distribution prints): 12 groups of base32 of the
    # key's hash; any stable name would do, this one people have seen before.
    digest = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    kid = ":".join(digest[i : i + 4] for i in range(0, 48, 4))
    return SigningKeyRow(
        kid=kid,
        algorithm=ALGORITHM,
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        created_at=time.time(),
        retired_at=None,
    )


class Keys:
    """The signing keys as last read from the database (dropped whenever the auth
    version moves: see :class:`app.auth.service.Auth`)."""

    def __init__(self, records: AuthRecords) -> None:
        self.records = records
        self._keys: list[SigningKeyRow] | None = None
        self._parsed: dict[str, Any] = {}

    def forget(self) -> None:
        self._keys = None
        self._parsed = {}

    async def _all(self) -> list[SigningKeyRow]:
        if self._keys is None:
            self._keys = await self.records.signing_keys()
        return self._keys

    async def signer(self) -> SigningKeyRow:
        live = [k for k in await self._all() if k.retired_at is None]
        if not live:
            await self.records.add_signing_key(new_signing_key())
            self.forget()
            live = [k for k in await self._all() if k.retired_at is None]
        return max(live, key=lambda k: (k.created_at, k.kid))

    async def verifier(self, kid: str) -> Any | None:
        if kid in self._parsed:
            return self._parsed[kid]
        for key in await self._all():
            if key.kid == kid and key.retired_at is None:
                self._parsed[kid] = serialization.load_pem_public_key(key.public_pem.encode())
                return self._parsed[kid]
        return None

    async def rotate(self) -> SigningKeyRow:
        key = new_signing_key()
        await self.records.add_signing_key(key)
        self.forget()
        return key


class Bearer:
    def __init__(self, keys: Keys, issuer: str, service: str, ttl: float) -> None:
        self.keys, self.issuer, self.service, self.ttl = keys, issuer, service, ttl

    async def issue(
        self, subject: str, access: list[dict[str, Any]], token_id: int | None = None
    ) -> tuple[str, float]:
        """A signed token for ``access`` ([{type, name, actions}]); its lifetime.
        ``token_id``: the API token it was bought with, which it dies with."""
        key = await self.keys.signer()
        now = time.time()
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": int(now + self.ttl),
            "nbf": int(now) - 1,
            "iat": int(now),
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        if token_id is not None:
            claims["tid"] = token_id
        token = jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, self.ttl

    async def verify(self, token: str) -> Claims:
        """The token's claims if one of our live keys signed it for this service and it
        has not expired; :class:`InvalidBearer` otherwise (alg ``none``, another
        algorithm, a key we do not know or retired, a tampered claim)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidBearer(f"not a token: {exc}") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise InvalidBearer("not signed by this service")
        key = await self.keys.verifier(kid)
        if key is None:
            raise InvalidBearer("signed by a key this service does not know (or retired)")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidBearer(str(exc)) from None
        token_id = claims.get("tid")
        if token_id is not None and (not isinstance(token_id, int) or isinstance(token_id, bool)):
            raise InvalidBearer("tid: not a token id")
        return Claims(
            str(claims["sub"]), _access(claims.get("access")), float(claims["exp"]), token_id
        )


def _access(value: Any) -> tuple[tuple[str, str, frozenset[str]], ...]:
    if not isinstance(value, list):
        raise InvalidBearer("access: not a list")
    found = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidBearer("access: not a list of objects")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise InvalidBearer("access: type, name and actions")
        found.append((kind, name, frozenset(a for a in actions if isinstance(a, str))))
    return tuple(found)
