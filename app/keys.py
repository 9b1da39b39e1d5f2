"""Typed keys for everything the application object holds, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from app.auth.service import Auth
    from app.backends.cache import Cache
    from app.backends.metadata import MetadataStore
    from app.backends.storage import BlobStorage
    from app.cas import ContentStore
    from app.config import Config
    from app.metrics import Metrics
    from app.proxy.core import RemoteCore
    from app.proxy.upstream import Upstream
    from app.repositories import Repositories
    from collector import Collector

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORAGE: web.AppKey[BlobStorage] = web.AppKey("storage")
METADATA: web.AppKey[MetadataStore] = web.AppKey("metadata")
CACHE: web.AppKey[Cache] = web.AppKey("cache")
CAS: web.AppKey[ContentStore] = web.AppKey("cas")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
REPOSITORIES: web.AppKey[Repositories] = web.AppKey("repositories")
COLLECTOR: web.AppKey[Collector] = web.AppKey("collector")
PROXY: web.AppKey[RemoteCore] = web.AppKey("proxy")
UPSTREAMS: web.AppKey[dict[str, Upstream]] = web.AppKey("upstreams")
AUTH: web.AppKey[Auth] = web.AppKey("auth")
