"""Virtual OCI repositories: ``/v2/<virtual>/<image>/…`` over ordered members.

Merge rules:

- a manifest (by tag or digest) and a blob: from the first member (in order) that
  has it, a local's through the OCI records and the CAS, a remote's through the core
  (:class:`OciRemote`, as data, never HTTP to ourselves);
- tags/list: the union of the members' tags, sorted and paged (``n``, ``last``, Link)
  as a local image's are;
- referrers: the union of the members' descriptors, the first member winning per
  digest (an ``artifactType`` filter applied to remote lists here);
- the guard's unit is the image name (lower case by the spec: an upper-case name is
  NAME_INVALID before it gets here): a local member that holds manifests under the
  name, or a ``reserved`` glob matching it (``acme/*``), keeps every remote member from
  being asked for anything of it; ``allow`` lets a name through.

Pushes and deletes never get here: :meth:`Oci.written_to` sends them to deploy_to.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.formats.api import (
    MEMBER_HEADERS,
    Answer,
    BlobBody,
    Dateless,
    Digest,
    Held,
    Member,
    Missing,
    Opened,
    Repository,
    Virtual,
    VirtualOptions,
    answer_headers,
    edge,
    explained,
    first_served,
    leave_the_others,
    send_blob,
)
from app.formats.oci import manifests
from app.formats.oci import remote as remotes
from app.formats.oci.context import API_VERSION, Target
from app.formats.oci.errors import BlobUnknown, ManifestUnknown, NameInvalid, NameUnknown
from app.formats.oci.names import NAME, lookup_reference
from app.formats.oci.records import Manifest
from app.formats.oci.referrers import local_referrers
from app.formats.oci.services import Oci


class VirtualOciOptions(Dateless, VirtualOptions):
    """No cooldown: the protocol says nothing of when a release was published."""


def _image(name: str) -> str:
    return name  # names are lower case by the spec's expression: nothing to fold


class OciVirtual:
    def __init__(self, oci: Oci) -> None:
        self.oci = oci

    def of(self, repo: Repository) -> Virtual:
        return self.oci.services.virtuals.of(repo, _image)

    async def _ask(
        self, t: Target, what: str, local: Any, remote: Any
    ) -> tuple[Virtual, list[Answer[Any]]]:
        """Every member's answer for image ``t.image``: ``local(member_target)`` and
        ``remote(member_target)`` say what a member has (None: nothing)."""
        virtual = self.of(t.repo)
        records = self.oci.records

        async def question(member: Member) -> Any:
            there = Target(member.repo, t.image)
            if member.local:
                found = await local(there)
                if found is None and not await records.has_name(member.repo.id, t.image):
                    return None
                return Held(found, f"holds {t.image} (guarding it), not {what}")
            return await remote(there)

        return virtual, await virtual.ask(t.image, question)

    # -- manifests ------------------------------------------------------------------

    async def manifest(
        self, t: Target, reference: str | Digest
    ) -> tuple[Virtual, list[Answer[Any]]]:
        records, pull = self.oci.records, self.oci.pull

        async def local(there: Target) -> Manifest | None:
            digest: str | None = str(reference)
            if isinstance(reference, str):
                digest = await records.resolve_tag(there.repo.id, there.image, reference)
            if digest is None:
                return None
            return await records.get_manifest(there.repo.id, there.image, digest)

        async def remote(there: Target) -> remotes.Manifest | None:
            found = await pull.manifest(there, reference)
            return None if isinstance(found, Missing) else found

        return await self._ask(t, str(reference), local, remote)

    async def serve_manifest(
        self, request: web.Request, t: Target, reference: str | Digest
    ) -> web.StreamResponse:
        _virtual, answers = await self.manifest(t, reference)
        served = first_served(answers)
        headers = answer_headers(answers)
        if served is None:
            raise ManifestUnknown(
                f"manifest {reference} unknown to {t.name}",
                detail={"reference": str(reference)},
                headers=headers,
            )
        request[MEMBER_HEADERS] = {**headers, "X-Artifactapi-Served-By": served.name}
        value = served.value
        if served.member.local:
            assert isinstance(value, Manifest)
            found = value
            if not manifests.acceptable(request.headers.get("Accept")):
                raise ManifestUnknown(
                    f"manifest is {found.media_type}; the client accepts only schema1",
                    detail={"digest": found.digest},
                )
            body = BlobBody.stored(
                self.oci.cas, found.blob_digest, found.size, found.media_type,
                etag=found.digest, redirect=False,
            )  # fmt: skip
            return await send_blob(
                request, body, {**API_VERSION, "Docker-Content-Digest": found.digest}
            )
        assert isinstance(value, remotes.Manifest)
        pulled = value
        digest = reference if isinstance(reference, Digest) else None
        if digest is None:
            digest = manifests.manifest_digest(pulled.body)
        return web.Response(
            body=pulled.body,
            headers={
                **API_VERSION,
                "Content-Type": pulled.media_type,
                "Docker-Content-Digest": str(digest),
                "ETag": f'"{digest}"',
                "X-Cache": pulled.how,
            },
        )

    # -- blobs ----------------------------------------------------------------------

    async def serve_blob(
        self, request: web.Request, t: Target, digest: Digest
    ) -> web.StreamResponse:
        records, pull, cas = self.oci.records, self.oci.pull, self.oci.cas
        text = str(digest)

        async def local(there: Target) -> str | None:
            stored = await records.linked_blob(there.repo.id, there.image, text)
            if stored is None:  # a manifest's bytes are a blob too, as in distribution
                manifest = await records.get_manifest(there.repo.id, there.image, text)
                stored = manifest.blob_digest if manifest else None
            return stored

        async def remote(there: Target) -> Opened | None:
            opened = await pull.open(there, remotes.blob_fetch(there, digest))
            return None if isinstance(opened, Missing) else opened

        _virtual, answers = await self._ask(t, text, local, remote)
        served = first_served(answers)
        leave_the_others(answers, served)
        headers = answer_headers(answers)
        blob = None
        if served is not None and served.member.local:
            assert isinstance(served.value, str)  # the digest the local member stored
            blob = await cas.stat(served.value)
        if served is None or (served.member.local and blob is None):
            raise BlobUnknown(
                f"blob {digest} unknown to {t.name}", detail={"digest": text}, headers=headers
            )
        request[MEMBER_HEADERS] = {**headers, "X-Artifactapi-Served-By": served.name}
        if blob is not None:
            body = BlobBody.stored(
                cas, blob.digest, blob.size, "application/octet-stream", etag=text
            )
            return await send_blob(request, body, {**API_VERSION, "Docker-Content-Digest": text})
        opened = served.value
        assert opened is not None
        return await edge.respond(request, opened)

    # -- tags and referrers -----------------------------------------------------------

    async def tag_answers(self, t: Target, limit: int, last: str) -> list[Answer[Any]]:
        records, pull = self.oci.records, self.oci.pull

        async def local(there: Target) -> list[str] | None:
            tags = await records.tags(there.repo.id, there.image, limit, last)
            return tags or None

        async def remote(there: Target) -> list[str] | None:
            found = await pull.document(there)
            if isinstance(found, Missing):
                return None
            return _Listed(sorted(tag for tag in found.tags if tag > last)[:limit], found.how)

        _virtual, answers = await self._ask(t, "any tag", local, remote)
        return answers

    async def tags(self, request: web.Request, t: Target, limit: int, last: str) -> list[str]:
        """Up to ``limit`` of the merged tags after ``last``, sorted."""
        answers = await self.tag_answers(t, limit, last)
        headers = answer_headers(answers)
        if not any(a.status == "served" or a.held for a in answers):
            raise NameUnknown(
                f"{t.name} holds no manifests", detail={"name": t.name}, headers=headers
            )
        request[MEMBER_HEADERS] = headers
        merged: set[str] = set()
        for answer in answers:
            merged.update(answer.value or [])
        return sorted(merged, key=lambda tag: tag.encode())[:limit]

    async def referrers(
        self, request: web.Request, t: Target, subject: Digest, artifact_type: str | None
    ) -> list[dict[str, object]]:
        pull = self.oci.pull

        async def local(there: Target) -> list[dict[str, object]] | None:
            return await local_referrers(self.oci, there, str(subject), artifact_type) or None

        async def remote(there: Target) -> list[dict[str, Any]] | None:
            found = await pull.referrers(there, subject)
            if isinstance(found, Missing):
                return None
            listed = found.descriptors
            if artifact_type is not None:
                listed = [d for d in listed if d.get("artifactType") == artifact_type]
            return _Listed(listed, found.how) if listed else None

        _virtual, answers = await self._ask(t, f"referrers of {subject}", local, remote)
        request[MEMBER_HEADERS] = answer_headers(answers)
        merged: dict[str, dict[str, object]] = {}
        for answer in answers:
            for descriptor in answer.value or []:
                merged.setdefault(str(descriptor["digest"]), descriptor)
        return list(merged.values())

    # -- explain ----------------------------------------------------------------------

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        if len(name) > 255 or not NAME.match(name):
            raise NameInvalid(f"invalid image name {name[:300]!r}")
        t = Target(repo, name)
        if version is None:
            answers = await self.tag_answers(t, 1000, "")
            virtual = self.of(repo)
            first = first_served(answers)
            return explained(virtual, name, None, answers, first.name if first else None, _tags_of)
        virtual, answers = await self.manifest(t, lookup_reference(version))
        first = first_served(answers)
        return explained(virtual, name, version, answers, first.name if first else None, _digest_of)


def of(oci: Oci) -> OciVirtual:
    return OciVirtual(oci)


class _Listed(list[Any]):
    """A remote member's tags or referrers, and how the core answered for them."""

    def __init__(self, items: list[Any], how: str) -> None:
        super().__init__(items)
        self.how = how


def _tags_of(answer: Answer[Any]) -> dict[str, Any]:
    return {"tags": list(answer.value)} if answer.value else {}


def _digest_of(answer: Answer[Any]) -> dict[str, Any]:
    value = answer.value
    if isinstance(value, Manifest):
        return {"digest": value.digest, "media_type": value.media_type}
    if isinstance(value, remotes.Manifest):
        digest = manifests.manifest_digest(value.body)
        return {"digest": str(digest), "media_type": value.media_type}
    return {}
