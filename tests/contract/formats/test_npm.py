"""The format contract for npm: a local repository published to as npm does, and a
remote one over a fake npm registry."""

from __future__ import annotations

from aiohttp import web

from tests.contract.formats.case import Answer, Call, ContractCase, remote
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.integration.test_remote_npm import FakeRegistry, tarball
from tests.npm_bodies import publish_body

TARBALL = tarball("demo", "1.0.0")
ROOT = "/repository/npm-remote"
LOCAL = "/repository/npm-local"
PUBLISHED = tarball("published", "1.0.0")
HIT = {"X-Cache": "HIT"}


class Registry(FakeRegistry):
    """Its packuments link tarballs at its own address, however it was reached."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.base = f"{request.scheme}://{request.host}"
        return await super().handle(request)


def npm_shape(answer: Answer) -> None:
    """``{"error": message}``: what the npm client prints of a failed request."""
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body


CASE = ContractCase(
    format="npm",
    repositories=lambda upstream: [
        remote("npm-remote", "npm", upstream),
        {"name": "npm-local", "format": "npm", "kind": "local"},
    ],
    upstream=lambda: Registry(packages=("demo",)).app(),
    server={"max_body_size": "1KiB"},
    stores=[
        Call("PUT", f"{LOCAL}/published", 201, body=publish_body("published", "1.0.0", PUBLISHED)),
        Call("GET", f"{ROOT}/demo", 200),
        Call("GET", f"{ROOT}/demo/-/demo-1.0.0.tgz", 200, answer=TARBALL),
    ],
    serves=[
        Call("GET", f"{LOCAL}/published", 200),
        Call("GET", f"{LOCAL}/published/-/published-1.0.0.tgz", 200, answer=PUBLISHED),
        Call("GET", f"{ROOT}/demo", 200, answer_headers=HIT),
        Call("GET", f"{ROOT}/demo/-/demo-1.0.0.tgz", 200, answer=TARBALL, answer_headers=HIT),
    ],
    errors={
        400: Call("GET", f"{ROOT}/.hidden", 400),
        404: Call("GET", f"{ROOT}/demo/-/demo-9.9.9.tgz", 404),
        405: Call("PUT", f"{ROOT}/demo", 405, body=b"{}"),
        413: Call("PUT", f"{ROOT}/demo", 413, body=bytes(2048), expect100=True),
    },
    other_errors=[
        Call("PUT", f"{LOCAL}/Upper", 400, body=publish_body("Upper", "1.0.0")),
        Call("PUT", f"{LOCAL}/published", 400, body=b'{"name": "published", "_attachments": {'),
        Call("PUT", f"{LOCAL}/published", 403, body=publish_body("published", "1.0.0", PUBLISHED)),
        Call("GET", f"{LOCAL}/published/-/published-9.9.9.tgz", 404),
        Call("POST", f"{LOCAL}/published", 405, body=b"{}"),
        Call("PUT", f"{LOCAL}/big", 413, body=bytes(2048), expect100=True),
        Call("PUT", f"{LOCAL}/big", 413, body=bytes(2048)),
        Call("GET", f"{ROOT}/-/npm/v1/security/advisories/bulk", 405),
        Call("GET", f"{ROOT}/-/v1/search?text={'a' * 5000}", 400),
        Call("GET", f"{ROOT}/-/no-such-endpoint", 404),
    ],
    shape=npm_shape,
)
