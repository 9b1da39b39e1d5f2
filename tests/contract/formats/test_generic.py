"""The format contract for generic files: a local repository written with PUT, and a
remote one over a fake file tree."""

from __future__ import annotations

from typing import Any

from tests.contract.formats.case import Call, ContractCase, default_error_shape, remote
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.upstreams import File, FileTree

FILE = b"generic contract bytes\n"
FETCHED = b"fetched through the remote\n"
ROOT = "/repository/files"
REMOTE = "/repository/files-remote"


def repositories(upstream: str) -> list[dict[str, Any]]:
    return [
        {"name": "files", "format": "generic", "kind": "local"},
        remote("files-remote", "generic", upstream),
    ]


CASE = ContractCase(
    format="generic",
    repositories=repositories,
    upstream=lambda: FileTree(files={"lib/fetched.txt": File(FETCHED)}).app(),
    server={"max_body_size": "1KiB"},
    stores=[
        Call("PUT", f"{ROOT}/contract/file.txt", 201, body=FILE),
        Call("GET", f"{REMOTE}/lib/fetched.txt", 200, answer=FETCHED),
    ],
    serves=[
        Call("GET", f"{ROOT}/contract/file.txt", 200, answer=FILE),
        Call(
            "GET",
            f"{REMOTE}/lib/fetched.txt",
            200,
            answer=FETCHED,
            answer_headers={"X-Cache": "HIT"},
        ),
    ],
    errors={
        400: Call("GET", f"{ROOT}/contract/?limit=0", 400),
        404: Call("GET", f"{ROOT}/contract/missing.txt", 404),
        405: Call("POST", f"{ROOT}/contract/file.txt", 405, body=b"x"),
        413: Call("PUT", f"{ROOT}/contract/big.bin", 413, body=bytes(2048)),
    },
    other_errors=[
        Call("PUT", f"{ROOT}/contract/big.bin", 413, body=bytes(2048), expect100=True),
        Call("PUT", f"{ROOT}/contract/x.txt", 400, b"x", {"X-Checksum-Sha256": "not-hex"}),
        Call("PUT", f"{REMOTE}/lib/fetched.txt", 405, body=b"x"),
        Call("GET", f"{REMOTE}/lib/absent.txt", 404),
    ],
    shape=default_error_shape,
)
