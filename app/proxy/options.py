"""The options every remote repository has, whatever its format."""

from __future__ import annotations

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator

from app.config import Seconds
from app.proxy.cooldown import CooldownOptions


class CacheLimits(BaseModel):
    """How much of the upstream a remote repository keeps (the collector evicts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_idle: Seconds | None = None  # drop what nobody asked for in this long (e.g. 30d)
    max_bytes: ByteSize | None = None  # beyond this, drop the least recently used first


class RemoteOptions(CooldownOptions):
    """``min_release_age`` and ``cooldown_allow``: app/proxy/cooldown.py."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str  # from configuration only (``${ENV}`` works); never a default
    metadata_ttl: Seconds = 300.0  # mutable metadata is revalidated after this long
    negative_ttl: Seconds = 60.0  # an upstream 404 is remembered this long
    connect_timeout: Seconds = 10.0
    read_timeout: Seconds = 60.0  # between two reads of an upstream body
    retries: int = Field(default=2, ge=0, le=10)  # for idempotent requests, with backoff
    username: str | None = None  # basic auth, or the account for an OCI token service
    password: str | None = None
    token: str | None = None  # a bearer token sent as is
    proxy: str | None = None  # an http(s) proxy for upstream requests
    max_metadata_size: int = Field(default=64 * 1024**2, ge=1024)  # bytes
    cache: CacheLimits = CacheLimits()

    @field_validator("upstream", "proxy")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")) or len(url) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")
