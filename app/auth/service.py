"""Who is asking (:meth:`Auth.authenticate`) and whether they may (:meth:`Auth.
authorise`), with what every replica may keep in memory for a moment.

Credentials, in every client's way of sending them: HTTP Basic with a password, or
with an API token as the password (any user name: ``__token__`` for twine, the
user's own for docker); ``Authorization: Bearer`` with an API token (curl, npm's
``_authToken``) or with an OCI bearer token from ``/v2/token``.

What a process remembers (credentials it verified, each principal's grants, the
signing keys) is dropped whenever ``auth_version`` moves; every replica looks at it
every :data:`POLL` seconds, so a revoked token, a disabled user or a retired key stop
working everywhere within about that long. Nothing here is needed by a later
request: losing it costs one database look.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import hdrs, web

from app.auth.audit import AuditLog, AuditRecords
from app.auth.bearer import Bearer, InvalidBearer, Keys
from app.auth.passwords import verify_password
from app.auth.permissions import Action, Grant, allowed
from app.auth.records import AuthRecords, PrincipalRow
from app.auth.scopes import AS_OCI, OCI_ACTIONS, Scope
from app.auth.throttle import Throttle
from app.auth.tokens import is_token, token_digest
from app.config import AuthConfig, principal_name
from app.errors import Forbidden, Unauthorized

log = structlog.get_logger("artifactapi.auth")

POLL = 0.5  # seconds between looks at auth_version
REMEMBER = 60.0  # seconds a verified credential is trusted without the database
REMEMBERED = 10_000  # credentials a process keeps at most
USE_FLUSH = 10.0  # seconds between writes of tokens' last use


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # "" for anonymous
    kind: str  # anonymous | user | service
    admin: bool = False
    groups: frozenset[str] = frozenset()
    # An API token's scopes (None: all its owner may do).
    scopes: tuple[Grant, ...] | None = None
    # An OCI bearer token's access claim: (name, actions) (None: not a bearer token).
    access: tuple[tuple[str, frozenset[str]], ...] | None = None
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("", "anonymous")
# Who a request was authorised for, for handlers that say (npm whoami) or record it.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
# Set on a request about a repository anonymous may not read: its answer says
# Cache-Control: private, so no shared cache in front keeps it for others.
PRIVATE: web.RequestKey[bool] = web.RequestKey("private")
Challenge = Callable[[], str]  # the WWW-Authenticate a 401 carries, made only if needed


@dataclass(slots=True)
class _Remembered:
    principal: Principal
    until: float


@dataclass(slots=True)
class Auth:
    records: AuthRecords
    config: AuthConfig
    throttle: Throttle | None = None  # failed logins, counted across replicas
    keys: Keys = field(init=False)
    bearer: Bearer = field(init=False)
    audit: AuditLog = field(init=False)
    _verified: dict[bytes, _Remembered] = field(default_factory=dict)
    _verifying: dict[bytes, asyncio.Future[tuple[Principal, float]]] = field(default_factory=dict)
    _allowed: dict[tuple[int, str, str, bool, str | None], Principal] = field(default_factory=dict)
    _grants: dict[str, tuple[Grant, ...]] = field(default_factory=dict)
    _version: int | None = None
    _used: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = Keys(self.records)
        self.bearer = Bearer(
            self.keys, self.config.issuer, self.config.service, self.config.token_ttl
        )
        self.audit = AuditLog(AuditRecords(self.records.db))

    # -- who is asking ----------------------------------------------------------------

    def remembered(self, authorization: str | None) -> Principal | None:
        """The principal behind a credential this process verified lately (or anonymous,
        for none), without a wait; None if it must be verified (:meth:`authenticate`)."""
        if not authorization:
            return ANONYMOUS
        return self._recalled(_key(authorization))

    def _recalled(self, key: bytes) -> Principal | None:
        remembered = self._verified.get(key)
        if remembered is None or remembered.until <= time.monotonic():
            return None
        if remembered.principal.token_id is not None:
            self._used[remembered.principal.token_id] = time.time()
        return remembered.principal

    async def requester(self, request: web.Request) -> Principal:
        """The principal behind ``request``'s own ``Authorization`` header."""
        header = request.headers.get(hdrs.AUTHORIZATION)
        # request.remote asks the transport: only a credential not yet verified needs it.
        return self.remembered(header) or await self.authenticate(header, request.remote)

    async def authenticate(self, authorization: str | None, source: str | None = None) -> Principal:
        """The principal behind an ``Authorization`` header (None: anonymous);
        :class:`Unauthorized` for credentials that are malformed or do not verify."""
        if not authorization:
            return ANONYMOUS
        key = _key(authorization)
        known = self._recalled(key)
        if known is not None:
            return known
        # One verification at a time per credential: a client opening 32 connections
        # at once with one password pays one argon2 check, not 32 (64 MiB each).
        verifying = self._verifying.get(key)
        if verifying is None:
            verifying = asyncio.ensure_future(self._verify(authorization, source))
            self._verifying[key] = verifying
            verifying.add_done_callback(functools.partial(self._verified_once, key))
        principal, lifetime = await asyncio.shield(verifying)
        if len(self._verified) >= REMEMBERED:
            self._verified.clear()  # rare, and each entry costs one look to make again
        self._verified[key] = _Remembered(principal, time.monotonic() + min(REMEMBER, lifetime))
        return principal

    def _verified_once(self, key: bytes, done: asyncio.Future[tuple[Principal, float]]) -> None:
        self._verifying.pop(key, None)
        if not done.cancelled():
            done.exception()  # seen, even if every caller left before it came

    async def _verify(self, authorization: str, source: str | None) -> tuple[Principal, float]:
        """:meth:`_credentials`, with failures logged and counted (429 past the limits)."""
        user = _claimed_user(authorization)
        if self.throttle is not None:
            await self.throttle.check(user, source)
        try:
            return await self._credentials(authorization, source)
        except Unauthorized:
            # The name as claimed (bounded and printable), never any secret.
            shown = user[:64].encode("unicode_escape").decode()  # no control characters
            log.warning("authentication failed", user=shown, source=source)
            if self.throttle is not None:
                await self.throttle.failed(user, source)
            raise

    async def _credentials(self, authorization: str, source: str | None) -> tuple[Principal, float]:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            user, secret = _basic(value)
            if is_token(secret):
                return await self._api_token(secret)
            return await self._password(user, secret, source), REMEMBER
        if scheme.lower() == "bearer" and value:
            if is_token(value):
                return await self._api_token(value)
            return await self._bearer(value)
        raise Unauthorized("credentials must be HTTP Basic or a Bearer token")

    async def _password(self, user: str, password: str, source: str | None) -> Principal:
        try:
            principal_name(user)
        except ValueError:
            raise Unauthorized("user name or password is wrong") from None
        row = await self.records.principal(user)
        stored = row.password_hash if row is not None and not row.disabled else None
        if not await verify_password(stored, password) or row is None:
            raise Unauthorized("user name or password is wrong")
        return await self._principal(row)

    async def _api_token(self, secret: str) -> tuple[Principal, float]:
        token = await self.records.token_by_digest(token_digest(secret))
        if token is None or not token.usable(time.time()):
            raise Unauthorized("token is unknown, expired or revoked")
        self._used[token.id] = time.time()
        scopes = tuple(Grant.of(s["repository"], s["actions"]) for s in token.scopes) or None
        principal = await self._principal(token.principal)
        lifetime = REMEMBER if token.expires_at is None else token.expires_at - time.time()
        return Principal(
            principal.name, principal.kind, principal.admin, principal.groups, scopes,
            token_id=token.id,
        ), lifetime  # fmt: skip

    async def _bearer(self, value: str) -> tuple[Principal, float]:
        try:
            claims = await self.bearer.verify(value)
        except InvalidBearer as exc:
            raise Unauthorized(f"bearer token refused: {exc}") from None
        access = tuple(
            (name, frozenset().union(*(OCI_ACTIONS.get(a, frozenset()) for a in actions)))
            for kind, name, actions in claims.access
            if kind == "repository"
        )
        lifetime = claims.expires - time.time()
        if claims.token_id is not None:  # bought with an API token: it dies with that
            token = await self.records.token(claims.token_id)
            if token is None or not token.usable(time.time()):
                raise Unauthorized("bearer token refused: the token it was bought with is gone")
        if not claims.subject:
            return Principal("", "anonymous", access=access), lifetime
        row = await self.records.principal(claims.subject)
        if row is None or row.disabled:
            raise Unauthorized("bearer token refused: its user is gone or disabled")
        principal = await self._principal(row)
        return Principal(
            principal.name, principal.kind, principal.admin, principal.groups, access=access
        ), lifetime

    async def _principal(self, row: PrincipalRow) -> Principal:
        if row.disabled:
            raise Unauthorized(f"{row.name} is disabled")
        groups = await self.records.groups_of(row.id)
        return Principal(row.name, row.kind, row.admin, groups)

    # -- whether they may -----------------------------------------------------------

    async def may(
        self,
        principal: Principal,
        repository: str,
        action: Action,
        anonymous_read: bool = False,
        resource: str | None = None,
    ) -> bool:
        """Whether ``principal`` may do ``action`` in ``repository`` (``resource``: the
        name an OCI bearer token's access claim must cover, ``repository/image``)."""
        if not _covers(principal, resource if resource is not None else repository, action):
            return False
        if action == "read" and anonymous_read:
            return principal.scopes is None or allowed(principal.scopes, repository, action)
        if principal.anonymous:
            return False
        if principal.scopes is not None and not allowed(principal.scopes, repository, action):
            return False
        return principal.admin or allowed(await self.grants(principal), repository, action)

    def allowed_lately(
        self,
        principal: Principal,
        repository: str,
        action: Action,
        anonymous_read: bool = False,
        resource: str | None = None,
    ) -> bool:
        """Whether :meth:`authorise` let ``principal`` do this since anything about who
        may do what last changed: a remembered principal asks the same of the same
        repositories, request after request (a CI's downloads), answered without a wait."""
        decision = (id(principal), repository, action, anonymous_read, resource)
        return self._allowed.get(decision) is principal

    async def authorise(
        self,
        principal: Principal,
        repository: str,
        action: Action,
        challenge: Challenge,
        anonymous_read: bool = False,
        resource: str | None = None,
    ) -> None:
        """Nothing if ``principal`` may; :class:`Unauthorized` with the format's
        challenge if they should say who they are, :class:`Forbidden` if they did."""
        if self.allowed_lately(principal, repository, action, anonymous_read, resource):
            return
        decision = (id(principal), repository, action, anonymous_read, resource)
        if await self.may(principal, repository, action, anonymous_read, resource):
            if len(self._allowed) >= REMEMBERED:
                self._allowed.clear()
            self._allowed[decision] = principal  # held, so its id is not reused meanwhile
            return
        bare = dataclasses.replace(principal, access=None)
        covered = _covers(principal, resource if resource is not None else repository, action)
        if not covered and await self.may(bare, repository, action, anonymous_read):
            # A bearer token for other names or actions than its owner may have: the
            # client asks for one with this scope, then comes back.
            raise Unauthorized(
                "the token does not cover this",
                headers={"WWW-Authenticate": f'{challenge()},error="insufficient_scope"'},
            )
        if principal.anonymous:
            raise Unauthorized("authentication required", headers={"WWW-Authenticate": challenge()})
        raise Forbidden(f"{principal.name or 'this token'} may not {action} in {repository}")

    async def admin(self, request: web.Request) -> Principal:
        """The caller of an administrator's endpoint (the management API, collections):
        an admin, by a password or a token whose scopes leave ``admin`` on ``*``."""
        principal = await self.requester(request)
        signed_in(principal, admin=True)
        return principal

    async def grants(self, principal: Principal) -> tuple[Grant, ...]:
        """What the configuration and the API grant ``principal`` (its user and groups)."""
        found = self._grants.get(principal.name)
        if found is not None:
            return found
        subjects = [f"user:{principal.name}", *(f"group:{g}" for g in sorted(principal.groups))]
        rows = await self.records.permissions(subjects)
        grants = [Grant.of(r["repository"], r["actions"]) for r in rows]
        for declared in self.config.permissions:
            if principal.name in declared.users or principal.groups & set(declared.groups):
                grants.append(Grant.of(declared.repository, declared.actions))
        for publisher in self.config.trusted_publishers:
            if principal.kind == "service" and principal.name == f"publisher@{publisher.name}":
                grants.extend(Grant.of(g.repository, g.actions) for g in publisher.grants)
        self._grants[principal.name] = found = tuple(grants)
        return found

    async def granted(
        self, principal: Principal, scope: Scope, anonymous_read: Callable[[str], bool]
    ) -> list[str]:
        """The actions of an OCI ``scope`` that ``principal`` may have: the asked ones
        intersected with the granted (a partial grant is no error)."""
        repository = scope.name.split("/", 1)[0]
        public = anonymous_read(repository)
        given = []
        for asked in scope.actions:
            wanted = sorted(OCI_ACTIONS[asked])
            checks = [await self.may(principal, repository, a, public) for a in wanted]
            if all(checks):
                given.append(asked)
            elif asked == "*":
                given.extend(AS_OCI[a] for a, ok in zip(wanted, checks, strict=True) if ok)
        return list(dict.fromkeys(given))

    # -- keeping up with the other replicas -----------------------------------------

    def forget(self) -> None:
        self._verified.clear()
        self._allowed.clear()
        self._grants.clear()
        self.keys.forget()

    async def look(self) -> None:
        """Drop what this process remembers if anything changed since the last look."""
        version = await self.records.version()
        if version != self._version:
            if self._version is not None:
                self.forget()
            self._version = version

    async def watch(self) -> None:
        """:meth:`look` every :data:`POLL` seconds, and write tokens' last use."""
        flushed = time.monotonic()
        while True:
            await asyncio.sleep(POLL)
            try:
                await self.look()
                if time.monotonic() - flushed >= USE_FLUSH:
                    flushed = time.monotonic()
                    await self.flush_uses()
            except Exception as exc:  # the database is down: keep trying, keep serving
                log.warning("could not look for auth changes", error=repr(exc))

    async def flush_uses(self) -> None:
        used, self._used = self._used, {}
        if used:
            with contextlib.suppress(Exception):
                await self.records.tokens_used(used)


def is_admin(principal: Principal) -> bool:
    """An administrator, by a password or a token whose scopes leave ``admin`` on ``*``
    (never by an OCI bearer token, which only covers its access claim)."""
    scoped_out = principal.scopes is not None and not allowed(principal.scopes, "*", "admin")
    return principal.admin and not scoped_out and principal.access is None


def _key(authorization: str) -> bytes:
    # Credentials are remembered by their hash: no secret is kept as it was sent.
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).digest()


def _covers(principal: Principal, name: str, action: Action) -> bool:
    """Whether an OCI bearer token's access claim names ``action`` on ``name`` (any
    other credential covers everything its owner may do)."""
    if principal.access is None:
        return True
    return any(action in actions and n == name for n, actions in principal.access)


def _claimed_user(authorization: str) -> str:
    """The user name a Basic header claims ("" for anything else), for counting."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return _basic(value.strip())[0]
    except Unauthorized:
        return ""


def signed_in(principal: Principal, admin: bool = False) -> None:
    """:class:`Unauthorized` for anonymous, and :class:`Forbidden` for someone who is not
    an administrator where ``admin`` says one is needed."""
    if principal.anonymous:
        raise Unauthorized("authentication required")
    if admin and not is_admin(principal):
        raise Forbidden(f"{principal.name} is not an administrator")


def basic_credentials(user: str, password: str) -> str:
    """The ``Authorization`` value a client would send for ``user`` and ``password``
    (what :func:`_basic` reads back): for sign-ins that bring them in a body."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("Basic credentials are not base64 of user:password") from None
    user, colon, secret = decoded.partition(":")
    if not colon:
        raise Unauthorized("Basic credentials are not base64 of user:password")
    return user, secret
