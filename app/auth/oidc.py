"""Trusted publishing: a CI job trades the OIDC ID token its platform gave it (GitHub
Actions, GitLab, any issuer with a discovery document) for a short-lived API token,
so no long-lived secret lives in CI.

Only configured issuers are asked, at the URL the configuration gives (never one a
token names): the ID token's ``iss`` must equal a trusted publisher's issuer, its
signature verify against that issuer's published keys (fetched from its discovery
document, kept five minutes, fetched again once for a key id not seen), its ``aud``,
``exp``, ``nbf`` and ``iat`` hold, every claim the publisher names match, and it be
used only once (its ``jti`` remembered in the cache backend until it expires, so on
every replica). The API token it buys belongs to the service account
``publisher@<name>`` and holds the publisher's grants, nothing more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from app.auth.manage import create_principal, create_token
from app.auth.records import AuthRecords, TokenRow
from app.backends.cache import Cache, CacheError
from app.backends.metadata import Conflict
from app.config import TrustedPublisherConfig
from app.errors import Forbidden, Unauthorized, Unavailable

KEYS_FOR = 300.0  # seconds an issuer's keys are trusted before they are fetched again
LEEWAY = 30.0  # seconds of clock difference allowed with the issuer
MAX_ID_TOKEN = 16 * 1024


def owner_of(publisher: TrustedPublisherConfig) -> str:
    return f"publisher@{publisher.name}"


@dataclass(frozen=True, slots=True)
class Minted:
    secret: str
    token: TokenRow
    publisher: TrustedPublisherConfig


class TrustedPublishing:
    def __init__(
        self, records: AuthRecords, cache: Cache, publishers: tuple[TrustedPublisherConfig, ...]
    ) -> None:
        self.records, self.cache, self.publishers = records, cache, publishers
        self._keys: dict[str, tuple[float, jwt.PyJWKSet]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def exchange(self, id_token: str) -> Minted:
        """A new API token for the publisher ``id_token`` proves to be; 401 for a token
        that does not verify (or was used before), 403 for one no publisher trusts."""
        if len(id_token) > MAX_ID_TOKEN:
            raise Unauthorized("the ID token is too long")
        try:
            header = jwt.get_unverified_header(id_token)
            unverified = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("not an ID token") from None
        issuer = unverified.get("iss")
        candidates = [p for p in self.publishers if p.issuer == issuer]
        if not candidates:
            raise Unauthorized("no trusted publisher for this issuer")
        algorithm = header.get("alg")
        if not any(algorithm in p.algorithms for p in candidates):
            raise Unauthorized(f"ID tokens signed with {algorithm!r} are not accepted")
        key = await self._key(str(issuer), header.get("kid"))
        claims: dict[str, Any] | None = None
        for publisher in candidates:
            try:
                claims = jwt.decode(
                    id_token, key, algorithms=list(publisher.algorithms),
                    audience=publisher.audience, issuer=publisher.issuer, leeway=LEEWAY,
                    options={"require": ["exp", "iat", "iss", "aud"]},
                )  # fmt: skip
            except jwt.InvalidAudienceError:
                continue
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"ID token refused: {exc}") from None
            if all(fnmatchcase(str(claims.get(k, "")), v) for k, v in publisher.claims.items()):
                await self._first_use(id_token, claims)
                return await self._mint(publisher, claims)
        if claims is None:
            raise Unauthorized("ID token refused: no trusted publisher has its audience")
        raise Forbidden("no trusted publisher matches this ID token's claims")

    async def _first_use(self, id_token: str, claims: dict[str, Any]) -> None:
        seen = str(claims.get("jti") or hashlib.sha256(id_token.encode()).hexdigest())
        key = "oidc:used:" + hashlib.sha256(f"{claims['iss']}\0{seen}".encode()).hexdigest()
        lifetime = max(1.0, float(claims["exp"]) + LEEWAY - time.time())
        try:
            if await self.cache.incr(key, ttl=lifetime) > 1:
                raise Unauthorized("this ID token was used already")
        except CacheError:
            raise Unavailable("cannot check ID tokens for reuse right now") from None

    async def _mint(self, publisher: TrustedPublisherConfig, claims: dict[str, Any]) -> Minted:
        owner = owner_of(publisher)
        if await self.records.principal(owner) is None:
            with contextlib.suppress(Conflict):  # another replica made it a moment ago
                await create_principal(
                    self.records, owner, kind="service", description="trusted publisher"
                )
        subject = str(claims.get("sub", ""))[:200]
        scopes = [
            {"repository": g.repository, "actions": list(g.actions)} for g in publisher.grants
        ]
        secret, token = await create_token(
            self.records, owner, scopes, f"trusted publishing: {subject}", publisher.token_ttl
        )
        return Minted(secret, token, publisher)

    # -- the issuers' keys ----------------------------------------------------------

    async def _key(self, issuer: str, kid: Any) -> Any:
        if not isinstance(kid, str):
            raise Unauthorized("the ID token names no key")
        for fresh in (False, True):
            keys = await self._keyset(issuer, fresh)
            for key in keys.keys:
                if key.key_id == kid:
                    return key.key
        raise Unauthorized("the ID token's key is not one its issuer publishes")

    async def _keyset(self, issuer: str, fresh: bool) -> jwt.PyJWKSet:
        held = self._keys.get(issuer)
        if held is not None and not fresh and held[0] > time.monotonic():
            return held[1]
        discovery = await self._json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
            raise Unavailable("the issuer's discovery document names no key set")
        try:
            keys = jwt.PyJWKSet.from_dict(await self._json(jwks_uri))
        except jwt.PyJWTError as exc:
            raise Unavailable(f"the issuer's key set is unusable: {exc}") from None
        self._keys[issuer] = (time.monotonic() + KEYS_FOR, keys)
        return keys

    async def _json(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise Unavailable(f"the issuer answered {response.status} for {url}")
                body = await response.content.read(1024 * 1024)
                data = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"cannot reach the issuer: {exc!r}") from None
        if not isinstance(data, dict):
            raise Unavailable(f"{url} is not a JSON object")
        return data
