"""Manifest parsing and Accept handling, without a server."""

from __future__ import annotations

import json

import pytest

from app.formats.oci import manifests
from app.formats.oci.errors import ManifestInvalid
from app.formats.oci.records import Reference

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def desc(media_type: str, digest: str, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": 3, **extra}


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
