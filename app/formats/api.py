"""The one door a format comes in by: everything of the core a format may use.

A format imports from this module and from its own folder, nothing else of ``app``
or ``pipelines`` (an import contract in ``pyproject.toml`` holds it to that). What a
format needs and this door lacks is added here, where a reviewer sees the core's
surface grow, never imported around it.

- the plugin interface: :class:`Format`, the :class:`Services` it is bound to, the
  collector's :class:`Sweep`;
- repositories: :class:`Repository` (typed options), :class:`Repositories`;
- content: :class:`ContentStore` (ingest, open, stage, commit), :class:`Blob`, :class:`Part`;
- records: :class:`Records`, the base of a format's own queries, and the driver's types;
- the remote core: :class:`RemoteCore` and its plain results, :mod:`edge` (results as
  responses), upstreams, renderings, relays;
- virtual repositories: :class:`Virtuals` → :class:`Virtual` (members asked at once,
  the guard, the cooldown), :class:`Answer`, :func:`answer_headers`, :func:`explained`;
  :class:`Cooldown` and :class:`Patterns` for a remote's own cooldown;
- who is asking: :class:`Auth` (authenticate, authorise), :class:`Principal`, the
  actions, the OCI token scopes;
- errors (:class:`ApiError` and kin), HTTP helpers, client input bounds, digests (and
  the stages that compute and verify them on a stream: :func:`hashed`,
  :func:`hashed_aside`, :func:`verified`).
"""

from __future__ import annotations

from app.auth.audit import ACTION
from app.auth.manage import create_token
from app.auth.permissions import Action
from app.auth.records import TokenRow
from app.auth.scopes import parse_scopes
from app.auth.service import PRINCIPAL, PRIVATE, Auth, Principal, basic_credentials
from app.auth.tokens import token_digest
from app.backends.metadata import BlobsGone, Records
from app.backends.metadata.base import Conflict as RowConflict
from app.backends.metadata.base import Row, SqlDriver
from app.cas import Blob, BlobBeingCollected, ContentStore, Part
from app.errors import (
    ApiError,
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    LengthRequired,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from app.formats.base import Format, NoOptions, PackageChange, Services, Sweep
from app.http import BlobBody, ExternalUrl, etag_matches, request_body, send_blob
from app.inputs import whole_number
from app.proxy import edge
from app.proxy.cooldown import Cooldown, Dateless, Patterns
from app.proxy.core import Opened, RemoteCore, whole
from app.proxy.edge import cache_headers, read_only
from app.proxy.entries import Link
from app.proxy.options import RemoteOptions
from app.proxy.relay import read_body, relay
from app.proxy.renderings import Rendering, Renderings, rendering, sized
from app.proxy.results import Cached, CacheStatus, Document, Fetch, Missing
from app.proxy.upstream import Upstream
from app.repositories import Repositories, Repository
from app.virtual import (
    LEFT_OUT,
    MEMBER_HEADERS,
    Answer,
    Held,
    Member,
    Virtual,
    VirtualOptions,
    Virtuals,
    answer_headers,
    explained,
    first_served,
    leave_the_others,
)
from pipelines import (
    ALGORITHMS,
    Digest,
    Digests,
    InvalidDigest,
    hashed,
    hashed_aside,
    parse_digest,
    verified,
)
from pipelines.sources import once

__all__ = [
    "ACTION",
    "ALGORITHMS",
    "LEFT_OUT",
    "MEMBER_HEADERS",
    "PRINCIPAL",
    "PRIVATE",
    "Action",
    "Answer",
    "ApiError",
    "Auth",
    "BadGateway",
    "BadRequest",
    "Blob",
    "BlobBeingCollected",
    "BlobBody",
    "BlobsGone",
    "CacheStatus",
    "Cached",
    "Conflict",
    "ContentStore",
    "Cooldown",
    "Dateless",
    "Digest",
    "Digests",
    "Document",
    "ExternalUrl",
    "Fetch",
    "Forbidden",
    "Format",
    "Held",
    "InvalidDigest",
    "LengthRequired",
    "Link",
    "Member",
    "MethodNotAllowed",
    "Missing",
    "NoOptions",
    "NotFound",
    "Opened",
    "PackageChange",
    "Part",
    "Patterns",
    "PayloadTooLarge",
    "Principal",
    "Records",
    "RemoteCore",
    "RemoteOptions",
    "Rendering",
    "Renderings",
    "Repositories",
    "Repository",
    "Row",
    "RowConflict",
    "Services",
    "SqlDriver",
    "Sweep",
    "TokenRow",
    "Unauthorized",
    "Upstream",
    "Virtual",
    "VirtualOptions",
    "Virtuals",
    "answer_headers",
    "basic_credentials",
    "cache_headers",
    "create_token",
    "edge",
    "etag_matches",
    "explained",
    "first_served",
    "hashed",
    "hashed_aside",
    "leave_the_others",
    "once",
    "parse_digest",
    "parse_scopes",
    "read_body",
    "read_only",
    "relay",
    "rendering",
    "request_body",
    "send_blob",
    "sized",
    "token_digest",
    "verified",
    "whole",
    "whole_number",
]
