"""Build an OCI image layout on disk: real gzipped tar layers, a config, a manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    path: Path
    manifest_digest: str
    blob_digests: list[str]  # config first, then layers


def _write_blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def _layer(index: int, size: int) -> tuple[bytes, str]:
    """A gzipped tar holding one file of random bytes; returns it and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = os.urandom(size)
        info = tarfile.TarInfo(f"layer{index}/data.bin")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1), "sha256:" + hashlib.sha256(
        tar_bytes
    ).hexdigest()


def build(root: Path, tag: str, layer_sizes: list[int]) -> Layout:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layers, diff_ids = [], []
    for index, size in enumerate(layer_sizes):
        data, diff_id = _layer(index, size)
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _write_blob(root, data),
                "size": len(data),
            }
        )
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_descriptor = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": _write_blob(root, config),
        "size": len(config),
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor,
            "layers": layers,
        }
    ).encode()
    manifest_digest = _write_blob(root, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return Layout(
        root, manifest_digest, [config_descriptor["digest"], *(layer["digest"] for layer in layers)]
    )


def manifest_digest(root: Path, tag: str) -> str:
    index = json.loads((root / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return str(entry["digest"])
    raise KeyError(tag)


def blob(root: Path, digest: str) -> bytes:
    return (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
