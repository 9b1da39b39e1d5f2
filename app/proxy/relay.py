"""What a remote repository answers without caching: searches, audits. The request
goes to the upstream (a POST exactly once), and its answer streams back as it came,
status and all, with ``X-Cache: MISS``; nothing is stored."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import aiohttp
import structlog
from aiohttp import web

from app.errors import BadGateway, GatewayTimeout, PayloadTooLarge
from app.http import cut
from app.proxy.upstream import Upstream, UpstreamError, UpstreamTimeout
from pipelines.sources import received

log = structlog.get_logger("artifactapi.proxy")

# Upstream headers a relayed answer keeps; hop-by-hop and cookies never pass.
PASSED = (
    "Content-Type", "Content-Encoding", "Cache-Control", "ETag", "Last-Modified", "Allow",
    "Retry-After",
)  # fmt: skip


async def read_body(request: web.Request, limit: int) -> bytes:
    """A request body to relay, whole: a search or an audit is small, and a POST is
    sent upstream in one piece so that it cannot be retried half-sent."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in received(request.content):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return bytes(body)


async def relay(
    request: web.Request,
    upstream: Upstream,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """GET (or, with ``body``, POST) ``path`` upstream and stream its answer back."""
    asked: AbstractAsyncContextManager[aiohttp.ClientResponse] = (
        upstream.get(path, headers) if body is None else upstream.post(path, body, headers or {})
    )
    try:
        async with asked as answer:
            response = web.StreamResponse(
                status=answer.status,
                headers={
                    **{h: answer.headers[h] for h in PASSED if h in answer.headers},
                    "X-Cache": "MISS",
                },
            )
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            try:
                async for chunk in received(answer.content):
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Started: all that is left is to cut it, so the client sees it short.
                log.warning("relayed answer broke off", path=path, error=repr(exc))
                return cut(request, response)
            await response.write_eof()
            return response
    except UpstreamTimeout as exc:
        raise GatewayTimeout(str(exc)) from None
    except UpstreamError as exc:
        raise BadGateway(str(exc)) from None
