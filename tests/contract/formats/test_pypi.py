"""The format contract for PyPI: a local repository written with twine's upload form,
and a remote one over a fake simple index. An upload's errors are PyPI's shape (the
reason in the status line and as text, which twine and uv show); every other error
is the default JSON one."""

from __future__ import annotations

from typing import Any

from tests.contract.formats.case import Answer, Call, ContractCase, default_error_shape, remote
from tests.contract.formats.suite import *  # noqa: F403  the contract's tests
from tests.integration.test_remote_pypi import WHEEL, Index, build_wheel
from tests.pypi_dists import multipart, sha256, twine_fields, wheel, wheel_name

DATA = build_wheel()
ROOT = "/repository/pypi-remote"
LOCAL = "/repository/pypi-local"
HIT = {"X-Cache": "HIT"}
UPLOADED = wheel()
FILE = f"{LOCAL}/files/demo-pkg/{wheel_name()}"
FORM, FORM_TYPE = multipart(twine_fields(UPLOADED), wheel_name(), UPLOADED)
WRONG, _ = multipart(
    {**twine_fields(UPLOADED), "sha256_digest": sha256(b"x")}, wheel_name(), UPLOADED
)
GONE, _ = multipart({**twine_fields(UPLOADED), ":action": "submit"}, wheel_name(), UPLOADED)


def repositories(upstream: str) -> list[dict[str, Any]]:
    return [
        remote("pypi-remote", "pypi", upstream),
        {"name": "pypi-local", "format": "pypi", "kind": "local"},
    ]


def shape(answer: Answer) -> None:
    """An upload's error: text whose first line is the status line's reason, then the
    request id; any other: the default JSON shape."""
    if not answer.headers.get("Content-Type", "").startswith("text/plain"):
        return default_error_shape(answer)
    lines = answer.body.decode().splitlines()
    assert lines and lines[0], answer
    assert lines[-1] == f"(request {answer.headers.get('X-Request-ID')})", answer


CASE = ContractCase(
    format="pypi",
    repositories=repositories,
    upstream=lambda: Index(files={WHEEL: DATA}).app(),
    server={"max_body_size": "8KiB"},
    stores=[
        Call("GET", f"{ROOT}/simple/", 200),
        Call("GET", f"{ROOT}/simple/demo/", 200),
        Call("GET", f"{ROOT}/files/demo/{WHEEL}", 200, answer=DATA),
        Call("POST", f"{LOCAL}/legacy/", 200, body=FORM, headers=FORM_TYPE),
    ],
    serves=[
        Call("GET", f"{ROOT}/simple/", 200, answer_headers=HIT),
        Call("GET", f"{ROOT}/simple/demo/", 200, answer_headers=HIT),
        Call("GET", f"{ROOT}/files/demo/{WHEEL}", 200, answer=DATA, answer_headers=HIT),
        Call("GET", f"{LOCAL}/simple/demo-pkg/", 200),
        Call("GET", FILE, 200, answer=UPLOADED),
        Call("GET", f"{FILE}.metadata", 200),
        Call("POST", f"{LOCAL}/", 200, body=FORM, headers=FORM_TYPE),  # the same again
    ],
    errors={
        400: Call("GET", f"{ROOT}/simple/?q=%00", 400),
        404: Call("GET", f"{ROOT}/files/demo/demo-9.0.tar.gz", 404),
        405: Call("PUT", f"{ROOT}/simple/demo/", 405, body=b"x"),
        413: Call("PUT", f"{ROOT}/files/demo/big.whl", 413, body=bytes(16384), expect100=True),
    },
    other_errors=[
        Call("GET", f"{ROOT}/simple/-invalid-/", 404),
        Call("GET", f"{ROOT}/nothing/here", 404),
        Call("POST", f"{ROOT}/simple/", 405, body=b"x"),
        Call("POST", f"{LOCAL}/", 400, body=WRONG, headers=FORM_TYPE),
        Call("POST", f"{LOCAL}/", 400, body=b"not a form"),
        Call("POST", f"{LOCAL}/", 410, body=GONE, headers=FORM_TYPE),
        Call("POST", f"{LOCAL}/", 413, body=bytes(16384), headers=FORM_TYPE),
        Call("POST", f"{LOCAL}/", 413, body=bytes(16384), headers=FORM_TYPE, expect100=True),
        Call("GET", f"{LOCAL}/files/demo-pkg/demo_pkg-9.0.tar.gz", 404),
        Call("GET", f"{LOCAL}/simple/no-such/", 404),
        Call("PUT", f"{LOCAL}/simple/demo-pkg/", 405, body=b"x"),
    ],
    shape=shape,
)
