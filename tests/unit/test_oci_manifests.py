"""Manifest parsing and Accept handling, without a server."""

from __future__ import annotations

import json

import pytest

from app.config import ConfigError, parse_config
from app.formats import available_formats, validate_repositories
from app.formats.oci import manifests
from app.formats.oci.errors import ManifestInvalid
from app.formats.oci.records import Reference

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def desc(media_type: str, digest: str, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": 3, **extra}


IMAGE = {"schemaVersion": 2, "config": desc("a/c", D1), "layers": [desc("l", D2)]}
INDEX = {"schemaVersion": 2, "manifests": [desc(manifests.OCI_MANIFEST, D1)]}


def test_image_manifest_references_and_artifact_type() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "config": desc("application/vnd.example.config", D1),
            "layers": [desc("l", D2), desc("foreign", D3, urls=["https://x"])],
            "subject": desc(manifests.OCI_MANIFEST, D3),
        }
    ).encode()
    parsed = manifests.parse(raw, manifests.OCI_MANIFEST + "; charset=utf-8")
    assert parsed.media_type == manifests.OCI_MANIFEST
    assert parsed.artifact_type == "application/vnd.example.config"
    assert parsed.references() == [
        Reference(D1, "config"),
        Reference(D2, "layer"),
        Reference(D3, "layer"),
        Reference(D3, "subject"),
    ]
    assert [d.digest for d in parsed.required_blobs()] == [D1, D2]


def test_index_takes_its_type_from_json_when_the_content_type_is_generic() -> None:
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": manifests.DOCKER_LIST, "manifests": [desc("m", D1)]}
    ).encode()
    parsed = manifests.parse(raw, "application/json")
    assert parsed.media_type == manifests.DOCKER_LIST
    assert parsed.references() == [Reference(D1, "manifest")]
    assert parsed.artifact_type is None


@pytest.mark.parametrize(
    "doc",
    [
        {
            "schemaVersion": 2,
            "config": desc("a/c", D1),
            "layers": [{"mediaType": "l", "digest": D2, "size": True}],
        },
        {"schemaVersion": 2, "config": desc("a/c", D1), "layers": {}},
        {"schemaVersion": 2, "config": desc("a/c", "sha256:XYZ"), "layers": []},
        {"schemaVersion": 2, "config": desc("a/c", D1), "layers": [], "artifactType": 7},
        {"schemaVersion": 2, "config": desc("a/c", D1), "layers": [desc("l", D2, urls="x")]},
        {"schemaVersion": "2", "config": desc("a/c", D1), "layers": []},
        {"schemaVersion": 2, "config": desc("a/b\u0000", D1), "layers": []},
        {"schemaVersion": 2, "config": desc("a/b", D1), "layers": [], "artifactType": "x"},
    ],
)
def test_invalid_image_manifests(doc: dict[str, object]) -> None:
    with pytest.raises(ManifestInvalid):
        manifests.parse(json.dumps(doc).encode(), manifests.OCI_MANIFEST)


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("", True),
        ("*/*", True),
        (manifests.DOCKER_MANIFEST, True),
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", False),
        (
            "application/vnd.docker.distribution.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5",
            False,
        ),
        (f"application/vnd.docker.distribution.manifest.v1+json, {manifests.OCI_INDEX}", True),
    ],
)
def test_acceptable(accept: str | None, ok: bool) -> None:
    assert manifests.acceptable(accept) is ok


def test_manifest_digest_algorithms() -> None:
    assert str(manifests.manifest_digest(b"x")).startswith("sha256:")
    assert len(manifests.manifest_digest(b"x", "sha512").hex) == 128


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    with pytest.raises(ManifestInvalid):
        manifests.parse(b"[" * 100_000 + b"]" * 100_000, manifests.OCI_MANIFEST)


# -- how many descriptors -----------------------------------------------------------------


def test_descriptor_limits_and_duplicates_referenced_once() -> None:
    assert manifests.Limits() == manifests.Limits(layers=1000, index_entries=10_000)
    limits = manifests.Limits(layers=3, index_entries=2)
    at_cap = json.dumps({**IMAGE, "layers": [desc("l", D2)] * 3}).encode()
    parsed = manifests.parse(at_cap, manifests.OCI_MANIFEST, limits)
    assert len(parsed.required_blobs()) == 4
    assert parsed.references() == [Reference(D1, "config"), Reference(D2, "layer")]
    over = json.dumps({**IMAGE, "layers": [desc("l", D2)] * 4}).encode()
    with pytest.raises(ManifestInvalid) as refused:
        manifests.parse(over, manifests.OCI_MANIFEST, limits)
    assert refused.value.detail == {
        "field": "layers",
        "count": 4,
        "limit": 3,
        "option": "max_layers",
    }
    index = json.dumps({**INDEX, "manifests": INDEX["manifests"] * 3}).encode()  # type: ignore[operator]
    with pytest.raises(ManifestInvalid, match="max_index_entries"):
        manifests.parse(index, manifests.OCI_INDEX, limits)
    # The count is checked before any entry: a long list of junk costs only its parse.
    junk = json.dumps({**IMAGE, "layers": [None] * 4}).encode()
    with pytest.raises(ManifestInvalid, match="at most 3"):
        manifests.parse(junk, manifests.OCI_MANIFEST, limits)


@pytest.mark.parametrize(
    ("options", "key"),
    [({"max_layers": 0}, "max_layers"), ({"max_index_entries": "many"}, "max_index_entries")],
)
def test_limit_options_are_validated(options: dict[str, object], key: str) -> None:
    config = parse_config(
        {"repositories": [{"name": "d", "format": "oci", "options": options}]}, env={}
    )
    with pytest.raises(ConfigError, match=rf"repositories\[0\]\.options\.{key}"):
        validate_repositories(config, available_formats())
