"""The format contract for PyPI: a remote repository over a fake simple index."""

from __future__ import annotations

from tests.contract.formats.case import Call, ContractCase, default_error_shape, remote
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.integration.test_remote_pypi import WHEEL, Index, build_wheel

DATA = build_wheel()
ROOT = "/repository/pypi-remote"
HIT = {"X-Cache": "HIT"}

CASE = ContractCase(
    format="pypi",
    repositories=lambda upstream: [remote("pypi-remote", "pypi", upstream)],
    upstream=lambda: Index(files={WHEEL: DATA}).app(),
    server={"max_body_size": "1KiB"},
    stores=[
        Call("GET", f"{ROOT}/simple/", 200),
        Call("GET", f"{ROOT}/simple/demo/", 200),
        Call("GET", f"{ROOT}/files/demo/{WHEEL}", 200, answer=DATA),
    ],
    serves=[
        Call("GET", f"{ROOT}/simple/", 200, answer_headers=HIT),
        Call("GET", f"{ROOT}/simple/demo/", 200, answer_headers=HIT),
        Call("GET", f"{ROOT}/files/demo/{WHEEL}", 200, answer=DATA, answer_headers=HIT),
    ],
    errors={
        400: Call("GET", f"{ROOT}/simple/?q=%00", 400),
        404: Call("GET", f"{ROOT}/files/demo/demo-9.0.tar.gz", 404),
        405: Call("PUT", f"{ROOT}/simple/demo/", 405, body=b"x"),
        413: Call("PUT", f"{ROOT}/files/demo/big.whl", 413, body=bytes(2048), expect100=True),
    },
    other_errors=[
        Call("GET", f"{ROOT}/simple/-invalid-/", 404),
        Call("GET", f"{ROOT}/nothing/here", 404),
        Call("POST", f"{ROOT}/simple/", 405, body=b"x"),
    ],
    shape=default_error_shape,
)
