"""The server's connections: a bound on slow request headers, and parser errors
answered and logged like every other error.

aiohttp's connection handler (``RequestHandler``) is kept, with two changes:

- A client has ``server.header_timeout`` seconds to send a request's headers, counted
  from the connection's opening or, on a kept-alive connection, from the first byte
  of the next request; then the connection is closed. Without it a client trickling
  a header byte now and then (slowloris) holds its connection for as long as
  ``keepalive_timeout`` (an hour by default), and a few hundred of them hold the
  file descriptors a server has.
- A request the HTTP parser refuses (bad request line, bad header, headers too
  large) is one WARNING line without a traceback, not an ERROR with one, and its
  answer is the JSON error every other 400 has, not plain text.

The handler is made by aiohttp's ``Server``; :class:`GuardedRunner` has its server
make ours instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from app.errors import error_for_status
from app.formats.base import Format

log = structlog.get_logger("artifactapi.http")

# Enough of a parser's message to tell what was wrong; the rest may be the client's
# whole 8 KiB header line.
_MESSAGE_CHARS = 200
# A header timer may fire this early (the loop's clock has millisecond steps) and
# still count as due, rather than be armed again for the rest.
_EARLY = 0.005


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with the header timeout and quiet parser errors."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        # When the wait for the current request's headers began (loop time), or None
        # while no request is awaited. The timer is armed lazily and never cancelled
        # per request: on a kept-alive connection a call_later and a cancel for every
        # request cost a cache hit more than the rest of this class; instead the timer,
        # when it fires, looks at the wait in progress and goes again if it is younger.
        self._header_since: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._headers_awaited()

    def data_received(self, data: bytes) -> None:
        # A kept-alive connection's next request starts its clock with its first
        # byte; bytes that arrive while a request is handled are its body (or a
        # pipelined request, timed once the handler waits for it).
        # (_waiting_for_request and _headers_awaited inlined, and RequestHandler named
        # rather than super() made: this runs for every read of every connection)
        if (
            self._header_since is None
            and data
            and self._current_request is None
            and not self._messages
        ):
            self._header_since = since = self._loop.time()
            if self._header_timer is None:  # else the pending one will look at this wait
                self._arm(since + self._header_timeout)
        RequestHandler.data_received(self, data)
        if self._messages:  # a request's headers are complete (or refused): stop the clock
            self._header_since = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._header_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        return self._current_request is None and not self._messages

    def _headers_awaited(self) -> None:
        self._header_since = self._loop.time()
        if self._header_timer is None:  # else the pending one will look at this wait
            self._arm(self._header_since + self._header_timeout)

    def _arm(self, deadline: float) -> None:
        self._header_timer = self._loop.call_at(deadline, self._headers_due)

    def _headers_due(self) -> None:
        self._header_timer = None
        since = self._header_since
        if since is None or not self._waiting_for_request():
            return  # the headers made it (the timer lost a race with their last byte)
        deadline = since + self._header_timeout
        if self._loop.time() + _EARLY < deadline:  # a later wait than this timer was for
            self._arm(deadline)
            return
        self._header_since = None
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning(
            "request headers not received in time, connection closed",
            peer=_peer(peer),
            timeout_seconds=self._header_timeout,
        )
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)  # a bug: traceback
        text = (message or exc.message or type(exc).__name__).strip()[:_MESSAGE_CHARS]
        # A first request with no HTTP method is usually TLS or a scanner on the
        # plain port; aiohttp keeps those at debug, and so do we.
        noise = self._request_count == 1 and isinstance(exc, BadHttpMethod)
        (log.debug if noise else log.warning)(
            "request refused by the HTTP parser",
            peer=request.remote,
            status=status,
            error=type(exc).__name__,
            message=text,
        )
        # The application's request factory made it: a web.Request.
        shaped = cast(web.Request, request)
        response = Format().render_error(shaped, error_for_status(status, text), "")
        response.force_close()  # the rest of the stream cannot be trusted to be a request
        return response


def _peer(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


class _GuardedServer(web.Server):
    header_timeout: float

    def __call__(self) -> RequestHandler:
        return GuardedHandler(
            self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs
        )


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are :class:`GuardedHandler`\\ s."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The server aiohttp built (request handler, factory, settings) as it is;
        # only the class that makes each connection's handler changes.
        server.__class__ = _GuardedServer
        assert isinstance(server, _GuardedServer)
        server.header_timeout = self._header_timeout
        return server
