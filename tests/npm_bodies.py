"""npm publish bodies as npm 11 sends them (libnpmpublish's buildMetadata), for tests
that PUT them without the CLI: one version, its tarball base64 under _attachments."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from tests.integration.test_remote_npm import tarball

__all__ = ["provenance_bundle", "publish_body", "tarball"]


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish_document(
    name: str, version: str, data: bytes, tag: str = "latest", **manifest: Any
) -> dict[str, Any]:
    """The document npm PUTs to publish ``name@version`` with ``data`` as its tarball."""
    filename = f"{name}-{version}.tgz"
    version_manifest = {
        "name": name, "version": version, "main": "index.js", "_id": f"{name}@{version}",
        "_nodeVersion": "20.0.0", "_npmVersion": "11.19.1",
        "dist": {
            "integrity": integrity(data), "shasum": hashlib.sha1(data).hexdigest(),
            "tarball": f"http://localhost/{name}/-/{filename}",
        },
        **manifest,
    }  # fmt: skip
    return {
        "_id": name, "name": name, "description": manifest.get("description"),
        "dist-tags": {tag: version}, "versions": {version: version_manifest}, "access": "public",
        "_attachments": {
            filename: {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(data).decode(), "length": len(data),
            }
        },
    }  # fmt: skip


def publish_body(name: str, version: str, data: bytes | None = None, **kw: Any) -> bytes:
    data = tarball(name, version) if data is None else data
    return json.dumps(publish_document(name, version, data, **kw)).encode()


def provenance_bundle(name: str, version: str, data: bytes) -> dict[str, Any]:
    """A sigstore bundle shaped as ``npm publish --provenance`` attaches it (no real
    signature: no CI identity exists here, and the registry does not verify it)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"pkg:npm/{name}@{version}",
                     "digest": {"sha512": hashlib.sha512(data).hexdigest()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.test/ci"}},
    }  # fmt: skip
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": "MIIB"}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": payload, "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": "MEUC", "keyid": ""}],
        },
    }  # fmt: skip


def with_provenance(document: dict[str, Any], name: str, version: str, data: bytes) -> bytes:
    bundle = json.dumps(provenance_bundle(name, version, data))
    document["_attachments"][f"{name}-{version}.sigstore"] = {
        "content_type": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "data": bundle, "length": len(bundle),
    }  # fmt: skip
    return json.dumps(document).encode()
