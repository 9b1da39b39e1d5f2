"""The contract's service and its requests: a service of one shape with a bug on
demand, requests asked as a client would, the blob rows it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Middleware

from app import keys
from app.backends.metadata.store import BlobRow
from app.config import Config
from app.server import create_app
from tests.contract.formats.case import Answer, Call
from tests.signin import sign_in

# A request carrying this header meets a bug once its handler has run.
BUG = "X-Contract-Bug"


class InjectedBug(RuntimeError):
    """What a handler's bug looks like to the middleware: no error it knows."""


@web.middleware
async def bug_when_asked(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Inside the one middleware, so what it raises is shaped as any handler's bug
    would be; the format's own handler ran first (and named the format)."""
    if BUG not in request.headers:
        return await handler(request)
    try:
        await handler(request)
    except Exception as exc:
        raise InjectedBug("a handler's bug") from exc
    raise InjectedBug("a handler's bug")


async def ask(client: TestClient, call: Call, **headers: str) -> Answer:
    async with client.request(
        call.method,
        call.path,
        data=call.body,
        headers={**call.headers, **headers},
        expect100=call.expect100,
        allow_redirects=False,
    ) as response:
        return Answer(response.status, response.headers, await response.read())


async def serving(config: Config, *middlewares: Middleware) -> TestClient:
    app = create_app(config)
    app.middlewares.extend(middlewares)  # after observe: inside it
    client = TestClient(TestServer(app))
    await client.start_server()
    await sign_in(client)
    return client


@dataclass(frozen=True)
class Stored:
    answers: list[tuple[Call, Answer]]  # to each of the case's stores, then serves
    blobs: list[BlobRow]  # the blob rows they added


async def all_blobs(app: web.Application) -> list[BlobRow]:
    rows = await app[keys.METADATA].db.fetch(
        "SELECT digest, size, created_at, state, marked_at FROM blobs ORDER BY digest"
    )
    return [BlobRow(**row) for row in rows]
