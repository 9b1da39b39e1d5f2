"""The format contract for OCI: a local repository pushed as a registry client does,
and a remote one pulling the same image through from a small registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web

from tests.contract.formats.case import Answer, Call, ContractCase, remote
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.oci_docs import OCI_MANIFEST, digest_of, image_manifest

CONFIG = b'{"architecture": "amd64", "os": "linux"}'
LAYER = b"an OCI contract layer"
MANIFEST = image_manifest(CONFIG, [LAYER])
TOO_LARGE = bytes(2048)
NAME = "/v2/oci-local/contract/app"
PULLED = "/v2/oci-remote/contract/app"
ACCEPT = {"Accept": OCI_MANIFEST}
# The distribution spec's error codes: the ones a client acts on.
SPEC_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})  # fmt: skip
SERVER_CODES = {500: "UNKNOWN", 503: "UNAVAILABLE"}


def spec_shape(answer: Answer) -> None:
    """``{"errors": [{"code", "message", "detail"}]}``, a spec code for a client's error."""
    body = answer.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert set(error) == {"code", "message", "detail"}, error
    assert isinstance(error["message"], str) and error["message"], error
    if answer.status < 500:
        assert error["code"] in SPEC_CODES, error
    elif answer.status in SERVER_CODES:  # as distribution answers its own failures
        assert error["code"] == SERVER_CODES[answer.status], error
    assert answer.headers.get("Docker-Distribution-API-Version") == "registry/2.0", answer


def registry() -> web.Application:
    """An upstream serving contract/app:v1, the image the local repository is pushed."""
    blobs = {digest_of(data): data for data in (CONFIG, LAYER)}

    async def manifest(request: web.Request) -> web.Response:
        if request.match_info["reference"] not in ("v1", digest_of(MANIFEST)):
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest_of(MANIFEST)}
        return web.Response(body=MANIFEST, headers=headers)

    async def blob(request: web.Request) -> web.Response:
        data = blobs.get(request.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/v2/contract/app/manifests/{reference}", manifest)
    app.router.add_get("/v2/contract/app/blobs/{digest}", blob)
    return app


def pull(image: str, hit: bool = False) -> list[Call]:
    cached: Mapping[str, str] = {"X-Cache": "HIT"} if hit else {}
    return [
        Call("GET", f"{image}/manifests/v1", 200, None, ACCEPT, answer=MANIFEST),
        *(
            Call("GET", f"{image}/blobs/{digest_of(data)}", 200, answer=data, answer_headers=cached)
            for data in (CONFIG, LAYER)
        ),
    ]


def push(data: bytes, status: int = 201) -> Call:
    return Call("POST", f"{NAME}/blobs/uploads/?digest={digest_of(data)}", status, body=data)


CASE = ContractCase(
    format="oci",
    repositories=lambda upstream: [
        {"name": "oci-local", "format": "oci", "kind": "local"},
        remote("oci-remote", "oci", upstream),
    ],
    upstream=registry,
    server={"max_body_size": "1KiB"},
    stores=[
        push(CONFIG),
        push(LAYER),
        Call("PUT", f"{NAME}/manifests/v1", 201, MANIFEST, {"Content-Type": OCI_MANIFEST}),
        *pull(PULLED),
    ],
    serves=[*pull(NAME), *pull(PULLED, hit=True)],
    errors={
        400: Call("PUT", f"{NAME}/manifests/v2", 400, b"{not json", {"Content-Type": OCI_MANIFEST}),
        404: Call("GET", f"{NAME}/manifests/missing", 404, headers=ACCEPT),
        405: Call("PATCH", f"{NAME}/manifests/v1", 405, body=b"{}"),
        413: push(TOO_LARGE, 413),
    },
    other_errors=[
        Call("GET", f"{NAME}/no-such-endpoint", 404),  # no route: the format owns /v2/
        Call("DELETE", "/v2/", 405),
        Call("PATCH", f"{NAME}/blobs/uploads/no-such-session", 404, body=b"x"),
        replace(push(TOO_LARGE, 413), expect100=True),
        Call("GET", f"{PULLED}/manifests/v2", 404, headers=ACCEPT),
        Call("PUT", f"{PULLED}/manifests/v1", 405, MANIFEST, {"Content-Type": OCI_MANIFEST}),
        # Neither a tag nor a digest: unknown when read, invalid (a spec code) when pushed.
        Call("GET", f"{NAME}/manifests/.INVALID_MANIFEST_NAME", 404, headers=ACCEPT),
        Call("GET", f"{PULLED}/manifests/.INVALID_MANIFEST_NAME", 404, headers=ACCEPT),
        Call("PUT", f"{NAME}/manifests/.bad", 400, MANIFEST, {"Content-Type": OCI_MANIFEST}),
        Call(
            "PUT",
            f"{NAME}/manifests/{digest_of(MANIFEST)}?tag=.bad",
            400,
            MANIFEST,
            {"Content-Type": OCI_MANIFEST},
        ),
    ],
    shape=spec_shape,
)
