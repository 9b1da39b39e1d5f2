"""The format contract for OCI: a local repository, pushed as a registry client does."""

from __future__ import annotations

from dataclasses import replace

from tests.contract.formats.case import Answer, Call, ContractCase
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.oci_docs import OCI_MANIFEST, digest_of, image_manifest

CONFIG = b'{"architecture": "amd64", "os": "linux"}'
LAYER = b"an OCI contract layer"
MANIFEST = image_manifest(CONFIG, [LAYER])
TOO_LARGE = bytes(2048)
NAME = "/v2/oci-local/contract/app"
# The distribution spec's error codes: the ones a client acts on.
SPEC_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})  # fmt: skip


def spec_shape(answer: Answer) -> None:
    """``{"errors": [{"code", "message", "detail"}]}``, a spec code for a client's error."""
    body = answer.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert set(error) == {"code", "message", "detail"}, error
    assert isinstance(error["message"], str) and error["message"], error
    if answer.status < 500:
        assert error["code"] in SPEC_CODES, error
    assert answer.headers.get("Docker-Distribution-API-Version") == "registry/2.0", answer


def push(data: bytes, status: int = 201) -> Call:
    return Call("POST", f"{NAME}/blobs/uploads/?digest={digest_of(data)}", status, body=data)


CASE = ContractCase(
    format="oci",
    repositories=lambda _: [{"name": "oci-local", "format": "oci", "kind": "local"}],
    server={"max_body_size": "1KiB"},
    stores=[
        push(CONFIG),
        push(LAYER),
        Call("PUT", f"{NAME}/manifests/v1", 201, MANIFEST, {"Content-Type": OCI_MANIFEST}),
    ],
    serves=[
        Call("GET", f"{NAME}/manifests/v1", 200, headers={"Accept": OCI_MANIFEST}, answer=MANIFEST),
        Call("GET", f"{NAME}/blobs/{digest_of(CONFIG)}", 200, answer=CONFIG),
        Call("GET", f"{NAME}/blobs/{digest_of(LAYER)}", 200, answer=LAYER),
    ],
    errors={
        400: Call("PUT", f"{NAME}/manifests/v2", 400, b"{not json", {"Content-Type": OCI_MANIFEST}),
        404: Call("GET", f"{NAME}/manifests/missing", 404, headers={"Accept": OCI_MANIFEST}),
        405: Call("PATCH", f"{NAME}/manifests/v1", 405, body=b"{}"),
        413: push(TOO_LARGE, 413),
    },
    other_errors=[
        Call("GET", f"{NAME}/no-such-endpoint", 404),  # no route: the format owns /v2/
        Call("DELETE", "/v2/", 405),
        Call("PATCH", f"{NAME}/blobs/uploads/no-such-session", 404, body=b"x"),
        replace(push(TOO_LARGE, 413), expect100=True),
    ],
    shape=spec_shape,
)
