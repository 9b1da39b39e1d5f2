"""The format contract for generic files: a local repository, written with PUT."""

from __future__ import annotations

from tests.contract.formats.case import Call, ContractCase, default_error_shape
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests

FILE = b"generic contract bytes\n"
ROOT = "/repository/files"

CASE = ContractCase(
    format="generic",
    repositories=lambda _: [{"name": "files", "format": "generic", "kind": "local"}],
    server={"max_body_size": "1KiB"},
    stores=[Call("PUT", f"{ROOT}/contract/file.txt", 201, body=FILE)],
    serves=[Call("GET", f"{ROOT}/contract/file.txt", 200, answer=FILE)],
    errors={
        400: Call("GET", f"{ROOT}/contract/?limit=0", 400),
        404: Call("GET", f"{ROOT}/contract/missing.txt", 404),
        405: Call("POST", f"{ROOT}/contract/file.txt", 405, body=b"x"),
        413: Call("PUT", f"{ROOT}/contract/big.bin", 413, body=bytes(2048)),
    },
    other_errors=[
        Call("PUT", f"{ROOT}/contract/big.bin", 413, body=bytes(2048), expect100=True),
        Call("PUT", f"{ROOT}/contract/x.txt", 400, b"x", {"X-Checksum-Sha256": "not-hex"}),
    ],
    shape=default_error_shape,
)
