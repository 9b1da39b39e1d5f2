"""The framework's own ceiling for the 4 KiB hit: aiohttp on uvloop, as many workers as
artifactapi runs, answering each small file of the tree from memory with no middleware,
routing table or cache lookup. Whatever artifactapi does per request comes on top of
this, so its ratio to this server is how much of the framework's speed it keeps, and
this server's ratio to nginx is the most any aiohttp service can reach on the machine.

    python -m bench.floor ROOT PORT WORKERS
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web


def serve(root: Path, port: int) -> None:
    files = {f"/{p.relative_to(root)}": p.read_bytes() for p in root.rglob("*.bin")}

    async def answer(request: web.Request) -> web.Response:
        body = files.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{path:.*}", answer)
    web.run_app(
        app, host="127.0.0.1", port=port, reuse_port=True, print=None, access_log=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


def main() -> None:
    root, port, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            serve(root, port)
            os._exit(0)
        children.append(pid)

    def stop(_signum: int, _frame: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
