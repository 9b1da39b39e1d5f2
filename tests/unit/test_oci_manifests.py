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


# -- one kind of document, one reading ----------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "media_type", "named"),
    [
        ({**IMAGE, "manifests": []}, manifests.OCI_MANIFEST, "manifests"),
        ({**IMAGE, "blobs": []}, manifests.OCI_MANIFEST, "blobs"),
        ({**IMAGE, "history": []}, manifests.OCI_MANIFEST, "history"),
        ({**INDEX, "config": desc("a/c", D1)}, manifests.OCI_INDEX, "config"),
        ({**INDEX, "layers": []}, manifests.OCI_INDEX, "layers"),
        ({**INDEX, "fsLayers": []}, manifests.OCI_INDEX, "fsLayers"),
        ({**INDEX, "Layers": []}, manifests.OCI_INDEX, "Layers"),
        ({**INDEX, "schemaversion": 2}, manifests.OCI_INDEX, "schemaversion"),
        (
            {**IMAGE, "layers": [{"mediaType": "l", "Digest": D2, "digest": D3, "size": 1}]},
            manifests.OCI_MANIFEST,
            "Digest",
        ),
        (
            {"mediaType": manifests.OCI_ARTIFACT, "artifactType": "a/b", "layers": []},
            manifests.OCI_ARTIFACT,
            "layers",
        ),
    ],
)
def test_ambiguous_documents(doc: dict[str, object], media_type: str, named: str) -> None:
    with pytest.raises(ManifestInvalid) as refused:
        manifests.parse(json.dumps(doc).encode(), media_type)
    assert named in refused.value.message


def test_a_null_field_of_another_kind_is_absent_as_go_reads_it() -> None:
    raw = json.dumps({**INDEX, "config": None, "layers": None}).encode()
    assert manifests.parse(raw, manifests.OCI_INDEX).manifests[0].digest == D1


def test_repeated_keys_anywhere() -> None:
    raw = json.dumps(IMAGE).encode()
    for repeated in (
        raw.replace(b'"schemaVersion": 2', b'"schemaVersion": 2, "schemaVersion": 2'),
        raw.replace(b'"size": 3', b'"size": 3, "size": 4', 1),
    ):
        with pytest.raises(ManifestInvalid, match="repeats the key"):
            manifests.parse(repeated, manifests.OCI_MANIFEST)


@pytest.mark.parametrize(
    "encoded",
    [
        json.dumps(IMAGE).encode("utf-16-le"),
        json.dumps(IMAGE).encode("utf-16-be"),
        json.dumps(IMAGE).encode("utf-16"),
        json.dumps(IMAGE).encode("utf-32"),
        json.dumps(IMAGE).encode("utf-8-sig"),
        json.dumps(IMAGE).encode().replace(b'"a/c"', b'"a/\xe9c"'),  # Latin-1, not UTF-8
    ],
)
def test_only_utf_8_without_a_bom(encoded: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="UTF-8"):
        manifests.parse(encoded, manifests.OCI_MANIFEST)


def test_docker_types_need_their_media_type_in_the_document() -> None:
    for doc, media_type in ((IMAGE, manifests.DOCKER_MANIFEST), (INDEX, manifests.DOCKER_LIST)):
        with pytest.raises(ManifestInvalid, match="mediaType"):
            manifests.parse(json.dumps(doc).encode(), media_type)
        stated = json.dumps({**doc, "mediaType": media_type}).encode()
        assert manifests.parse(stated, media_type).media_type == media_type
    # OCI only recommends it: the Content-Type names the kind.
    assert manifests.parse(json.dumps(IMAGE).encode(), manifests.OCI_MANIFEST).config


def test_required_lists_may_be_empty_not_missing() -> None:
    for doc, media_type, key in (
        (IMAGE, manifests.OCI_MANIFEST, "layers"),
        (INDEX, manifests.OCI_INDEX, "manifests"),
    ):
        empty = manifests.parse(json.dumps({**doc, key: []}).encode(), media_type)
        assert empty.references() == ([Reference(D1, "config")] if key == "layers" else [])
        for missing in ({k: v for k, v in doc.items() if k != key}, {**doc, key: None}):
            with pytest.raises(ManifestInvalid, match=key):
                manifests.parse(json.dumps(missing).encode(), media_type)


def test_a_zero_size_descriptor_is_valid_a_negative_one_not() -> None:
    doc = {**IMAGE, "layers": [{**desc("l", D2), "size": 0}]}
    assert manifests.parse(json.dumps(doc).encode(), manifests.OCI_MANIFEST).blobs[1].size == 0
    doc["layers"][0]["size"] = -1  # type: ignore[index]
    with pytest.raises(ManifestInvalid, match="size"):
        manifests.parse(json.dumps(doc).encode(), manifests.OCI_MANIFEST)


def test_artifact_blobs_and_subject_are_references() -> None:
    raw = json.dumps(
        {
            "mediaType": manifests.OCI_ARTIFACT,
            "artifactType": "application/vnd.example",
            "blobs": [desc("b", D1), desc("b", D2)],
            "subject": desc(manifests.OCI_MANIFEST, D3),
        }
    ).encode()
    parsed = manifests.parse(raw, manifests.OCI_ARTIFACT)
    assert [d.digest for d in parsed.required_blobs()] == [D1, D2]
    assert parsed.references() == [
        Reference(D1, "layer"),
        Reference(D2, "layer"),
        Reference(D3, "subject"),
    ]
    index = json.dumps({**INDEX, "subject": desc(manifests.OCI_MANIFEST, D3)}).encode()
    assert manifests.parse(index, manifests.OCI_INDEX).subject == manifests.Descriptor(
        manifests.OCI_MANIFEST, D3, 3
    )


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


@pytest.mark.parametrize(
    "second",
    [
        {"mediaType": "l", "digest": D2, "size": True},  # True == 1 in Python: not a size
        {"mediaType": "l", "digest": D2, "size": 1, "urls": "https://x"},
        {"mediaType": "l", "digest": D2, "size": 1, "SIZE": 2},
        {"mediaType": "l", "digest": D2, "size": 1, "urls": [["https://x"]]},  # unhashable
    ],
)
def test_a_repeated_descriptor_is_checked_once_by_all_it_says(second: dict[str, object]) -> None:
    first = {"mediaType": "l", "digest": D2, "size": 1}
    ok = json.dumps({**IMAGE, "layers": [first, dict(first)]}).encode()
    parsed = manifests.parse(ok, manifests.OCI_MANIFEST)
    assert parsed.blobs[1] == parsed.blobs[2]
    with pytest.raises(ManifestInvalid, match=r"layers\[1\]"):
        manifests.parse(
            json.dumps({**IMAGE, "layers": [first, second]}).encode(), manifests.OCI_MANIFEST
        )
