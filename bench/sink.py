"""The client's own ceiling for an upload: bare aiohttp on uvloop that reads every body
to its end, keeps nothing and says yes. ``twine upload`` and ``npm publish`` pointed at
it take as long as the client alone needs (start, hashing, base64, sending), so no
server can show more MB/s with that client; a server's time beyond it is its own.

    python -m bench.sink PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

READ = 1024 * 1024


async def swallow(request: web.Request) -> web.Response:
    while await request.content.read(READ):
        pass
    return web.json_response({"ok": True})


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


def main() -> None:
    app = web.Application(client_max_size=1024**4)
    app.router.add_get("/-/ping", ping)
    app.router.add_route("POST", "/{path:.*}", swallow)
    app.router.add_route("PUT", "/{path:.*}", swallow)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
