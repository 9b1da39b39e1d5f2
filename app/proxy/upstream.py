"""The client side of a remote repository: one pooled session per upstream.

Timeouts for connecting and between reads, retries with backoff for idempotent
requests that fail before a body arrives, credentials (basic, bearer, and the OCI
token flow a registry asks for with ``WWW-Authenticate: Bearer realm=…``),
redirects followed (CDNs), an optional proxy. Bodies are asked for as the upstream
stores them (``Accept-Encoding: identity``), so the bytes cached are the bytes
published and their checksums hold.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
import structlog
from yarl import URL

from app.proxy.options import RemoteOptions

log = structlog.get_logger("artifactapi.upstream")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF = 0.2  # seconds, doubled per attempt, with jitter
TOKEN_MAX_SIZE = 1024**2
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class UpstreamError(Exception):
    """The upstream could not be asked (unreachable) or broke its answer."""


class UpstreamTimeout(UpstreamError):
    pass


class Upstream:
    def __init__(self, name: str, options: RemoteOptions) -> None:
        self.name = name
        self.options = options
        self.base = options.upstream
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expiry): a hint
        self._origin = URL(options.upstream).origin()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                sock_connect=self.options.connect_timeout, sock_read=self.options.read_timeout
            )
            self._session = aiohttp.ClientSession(
                timeout=timeout,
                auto_decompress=False,
                trust_env=False,
                headers={"Accept-Encoding": "identity", "User-Agent": "artifactapi"},
                connector=aiohttp.TCPConnector(limit_per_host=64, ttl_dns_cache=60),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> URL:
        """``path`` is already safe and percent-encoded by the format; an absolute
        http(s) URL (a file an upstream page linked to, on a CDN) is taken as is."""
        if path.startswith(("http://", "https://")):
            return URL(path, encoded=True)
        return URL(f"{self.base}/{path.lstrip('/')}", encoded=True)

    @asynccontextmanager
    async def get(
        self, path: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer to ``method path``, retried while nothing was read."""
        url = self.url(path)
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._send(method, url, dict(headers or {}))
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                if last:
                    raise UpstreamTimeout(f"{self.name}: {method} {url} timed out") from exc
            except aiohttp.TooManyRedirects as exc:
                raise UpstreamError(f"{self.name}: {url} redirects in a loop") from exc
            except (aiohttp.ClientError, OSError) as exc:
                if last:
                    raise UpstreamError(f"{self.name}: {method} {url} failed: {exc}") from exc
            else:
                if response.status not in RETRY_STATUSES or last:
                    try:
                        yield response
                    finally:
                        response.release()
                    return
                response.release()
            delay = BACKOFF * 2**attempt * random.uniform(0.5, 1.5)
            log.info("upstream retry", upstream=self.name, url=str(url), attempt=attempt + 1)
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One POST (not idempotent: never retried), for what is relayed, not cached."""
        url = self.url(path)
        try:
            response = await self._send("POST", url, dict(headers), body)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"{self.name}: POST {url} timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"{self.name}: POST {url} failed: {exc}") from exc
        try:
            yield response
        finally:
            response.release()

    async def _send(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None = None
    ) -> aiohttp.ClientResponse:
        options = self.options
        # Credentials go to the configured upstream only, never to a host its pages
        # link to (a CDN, or anything an index names).
        trusted = url.origin() == self._origin
        if trusted and options.token:
            headers.setdefault("Authorization", f"Bearer {options.token}")
        elif trusted and (basic := self._basic()) is not None:
            headers.setdefault("Authorization", basic)
        scope_token = self._tokens.get(str(url.path))
        if scope_token and scope_token[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {scope_token[0]}"
        # aiohttp drops Authorization on a redirect to another host (a CDN).
        response = await self.session.request(
            method, url, headers=headers, data=body, proxy=options.proxy, allow_redirects=True
        )
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status != 401 or not challenge.lower().startswith("bearer "):
            return response
        # A registry's token service: get a token for this scope, ask once more.
        response.release()
        token = await self._token(challenge)
        self._tokens[str(url.path)] = token
        headers["Authorization"] = f"Bearer {token[0]}"
        return await self.session.request(
            method, url, headers=headers, data=body, proxy=options.proxy, allow_redirects=True
        )

    def _basic(self) -> str | None:
        username, password = self.options.username, self.options.password
        if username is None or password is None:
            return None
        return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    async def _token(self, challenge: str) -> tuple[str, float]:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise UpstreamError(f"{self.name}: unusable token realm {realm[:100]!r}")
        basic = self._basic()
        headers = {"Authorization": basic} if basic else {}
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        async with self.session.get(
            realm, params=query, headers=headers, proxy=self.options.proxy
        ) as r:
            if r.status != 200:
                raise UpstreamError(f"{self.name}: token service answered {r.status}")
            body = await r.content.read(TOKEN_MAX_SIZE)
        try:
            document = json.loads(body)
            token = str(document.get("token") or document["access_token"])
            expires_in = float(document.get("expires_in", 60))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamError(f"{self.name}: token service sent no token") from exc
        # Refreshed a little early, so a token never expires between check and use.
        return token, time.monotonic() + max(0.0, expires_in - 10)
