"""The rule that tells a simple page (or project list) from a login or error page:
what pypi.org, devpi, Artifactory, Nexus and bandersnatch emit passes, what a
gateway answers in their place does not."""

from __future__ import annotations

import json

import pytest

from app.formats.pypi import simple

BASE = "https://index.example/simple/foo-bar/"
HASH = "sha256=" + "ab" * 32
JSON_TYPE = simple.JSON_TYPE

PAGES = {
    "pypi.org": (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
        "<title>Links for foo-bar</title></head><body><h1>Links for foo-bar</h1>"
        f'<a href="https://files.example/foo_bar-1.0.tar.gz#{HASH}" '
        'data-requires-python="&gt;=3.8">foo_bar-1.0.tar.gz</a><br /></body></html>'
    ),
    "pypi.org, a project without files": (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
        "<title>Links for foo-bar</title></head><body><h1>Links for foo-bar</h1></body></html>"
    ),
    "devpi": (
        "<html><head><title>root/pypi: links for Foo.Bar</title></head><body>"
        "<h1>root/pypi: links for Foo.Bar</h1>"
        f'<a href="../../+f/ab/cd/Foo.Bar-2.0-py3-none-any.whl#{HASH}">'
        "Foo.Bar-2.0-py3-none-any.whl</a><br/></body></html>"
    ),
    "Artifactory": (
        "<html><head><title>Links for foo-bar</title></head><body><h1>Links for foo-bar</h1>"
        f'<a href="../../packages/ab/foo-bar-1.0.zip#{HASH}" rel="internal">foo-bar-1.0.zip</a>'
        "<br/></body></html>"
    ),
    "Nexus, a project without files": (
        '<html lang="en"><head><title>Links for foo_bar</title></head><body>'
        "<h1>Links for foo_bar</h1></body></html>"
    ),
    "bandersnatch": (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
        "</head><body>"
        f'<a href="../../packages/ab/foo_bar-1.0.tar.gz#{HASH}">foo_bar-1.0.tar.gz</a><br/>'
        "</body></html>"
    ),
    "a bare index, anchors only": (
        f'<a href="/packages/foo_bar-1.0-py3-none-any.whl#{HASH}">foo_bar-1.0-py3-none-any.whl</a>'
    ),
}

NOT_PAGES = {
    "a login page": (
        "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please log in</h1>"
        '<form method="post"><input type="password"></form><a href="/login">Log in</a>'
        '<a href="/help/">help</a></body></html>'
    ),
    "an error page": "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>",
    "another project's page": (
        "<html><head><title>Links for other</title></head><body>"
        f'<a href="/p/other-1.0.tar.gz#{HASH}">other-1.0.tar.gz</a></body></html>'
    ),
    "a page of an API version we cannot read": (
        '<html><head><meta name="pypi:repository-version" content="2.0"></head>'
        f'<body><a href="/p/foo_bar-1.0.tar.gz#{HASH}">foo_bar-1.0.tar.gz</a></body></html>'
    ),
    "a project's name without a version": (
        '<html><body><a href="/foo-bar-docs/">foo-bar-docs</a></body></html>'
    ),
}


@pytest.mark.parametrize("html", PAGES.values(), ids=PAGES.keys())
def test_what_real_indexes_emit_is_a_page(html: str) -> None:
    page = simple.parse(html.encode(), "text/html", BASE, "foo-bar")
    simple.check_page(page, "foo-bar")


@pytest.mark.parametrize("html", NOT_PAGES.values(), ids=NOT_PAGES.keys())
def test_what_a_gateway_answers_instead_is_not(html: str) -> None:
    page = simple.parse(html.encode(), "text/html", BASE, "foo-bar")
    with pytest.raises(ValueError):
        simple.check_page(page, "foo-bar")


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ({"meta": {"api-version": "1.1"}, "name": "Foo.Bar", "files": []}, True),
        (
            {
                "meta": {"api-version": "1.0"},
                "name": "foo-bar",
                "files": [
                    {
                        "filename": "foo_bar-1.0.tar.gz",
                        "url": "/p/foo_bar-1.0.tar.gz",
                        "hashes": {},
                    },
                ],
            },
            True,
        ),
        ({"meta": {"api-version": "1.1"}, "name": "other", "files": []}, False),
        ({"meta": {"api-version": "2.0"}, "name": "foo-bar", "files": []}, False),
        ({"name": "foo-bar", "files": []}, False),
        ({"meta": {"api-version": "1.1"}, "files": []}, False),
    ],
)
def test_a_json_page_names_its_project(document: dict[str, object], valid: bool) -> None:
    page = simple.parse(json.dumps(document).encode(), JSON_TYPE, BASE, "foo-bar")
    if valid:
        simple.check_page(page, "foo-bar")
    else:
        with pytest.raises(ValueError):
            simple.check_page(page, "foo-bar")


LISTS = {
    "pypi.org": (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
        '<title>Simple index</title></head><body><a href="/simple/0/">0</a>'
        '<a href="/simple/foo-bar/">Foo.Bar</a></body></html>'
    ),
    "an empty index with its API version": (
        '<html><head><meta name="pypi:repository-version" content="1.0"></head><body></body>'
    ),
    "devpi": (
        '<html><body><h1>root/pypi: simple list</h1><a href="/root/pypi/+simple/foo-bar/">'
        'foo-bar</a><br/><a href="/root/pypi/+simple/baz/">baz</a></body></html>'
    ),
    "bandersnatch, Nexus": '<a href="foo_bar/">foo_bar</a><br/><a href="baz/">baz</a>',
}

NOT_LISTS = {
    "a login page": NOT_PAGES["a login page"] + '<a href="/reset">Forgot password</a>',
    "an error page": NOT_PAGES["an error page"],
    "a list of an API version we cannot read": (
        '<meta name="pypi:repository-version" content="2.0"><a href="baz/">baz</a>'
    ),
}


@pytest.mark.parametrize("html", LISTS.values(), ids=LISTS.keys())
def test_what_real_indexes_list_is_a_list(html: str) -> None:
    simple.parse_projects(html.encode(), "text/html", checked=True)


@pytest.mark.parametrize("html", NOT_LISTS.values(), ids=NOT_LISTS.keys())
def test_what_a_gateway_lists_instead_is_not(html: str) -> None:
    assert simple.parse_projects(html.encode(), "text/html") is not None  # lenient: cached
    with pytest.raises(ValueError):
        simple.parse_projects(html.encode(), "text/html", checked=True)


def test_a_json_list_carries_its_api_version() -> None:
    listed = {"meta": {"api-version": "1.0"}, "projects": [{"name": "Foo.Bar"}]}
    assert simple.parse_projects(json.dumps(listed).encode(), JSON_TYPE, checked=True) == [
        "Foo.Bar"
    ]
    for document in ({"projects": []}, {"detail": "not authenticated"}):
        with pytest.raises(ValueError):
            simple.parse_projects(json.dumps(document).encode(), JSON_TYPE, checked=True)


def test_a_page_claims_pep_700_only_with_every_size_and_the_versions() -> None:
    whole = simple.DistFile("demo-1.0.tar.gz", "https://x.test/demo-1.0.tar.gz", size=3)
    bare = simple.DistFile("demo-1.1.tar.gz", "https://x.test/demo-1.1.tar.gz")
    for files, versions, claimed in [
        ([whole], ("1.0",), "1.1"),
        ([whole, bare], ("1.0", "1.1"), "1.0"),  # a size missing
        ([whole], None, "1.0"),  # no versions
        ([], (), "1.1"),
    ]:
        page = simple.Page("demo", files, versions=versions)
        document = json.loads(simple.render_json(page, "demo"))
        assert document["meta"] == {"api-version": claimed}, (files, versions)
