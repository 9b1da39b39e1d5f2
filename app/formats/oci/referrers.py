"""The referrers API's answer (an OCI index of descriptors) and a local image's part of it."""

from __future__ import annotations

import json

from aiohttp import web

from app.formats.oci import manifests
from app.formats.oci.context import API_VERSION, Target
from app.formats.oci.records import Manifest
from app.formats.oci.services import Oci


async def local_referrers(
    oci: Oci, t: Target, subject: str, artifact_type: str | None
) -> list[dict[str, object]]:
    """The descriptors of a local image's manifests whose subject is ``subject``."""
    records = oci.records
    found: list[Manifest] = []
    # A filter that is no media type matches nothing (and never reaches the database).
    if artifact_type is None or manifests.MEDIA_TYPE.match(artifact_type):
        found = await records.referrers(t.repo.id, t.image, subject, artifact_type)
    cas = oci.cas
    descriptors = []
    for m in found:
        descriptor: dict[str, object] = {
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.size,
        }
        if m.artifact_type:
            descriptor["artifactType"] = m.artifact_type
        # Annotations live only in the manifest's bytes; referrer lists are short.
        raw = b"".join([chunk async for chunk in cas.open(m.blob_digest)])
        if notes := manifests.annotations_of(raw):
            descriptor["annotations"] = notes
        descriptors.append(descriptor)
    return descriptors


def referrers_answer(
    descriptors: list[dict[str, object]], artifact_type: str | None
) -> web.Response:
    headers = {**API_VERSION, "Content-Type": manifests.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(body).encode(), headers=headers)
