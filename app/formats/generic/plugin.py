"""HTTP face of the generic format: thin handlers over :class:`LocalFiles`."""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import BaseModel

from app.formats.api import (
    BadRequest,
    BlobBody,
    Digest,
    Format,
    InvalidDigest,
    LengthRequired,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Repository,
    Services,
    parse_digest,
    request_body,
    send_blob,
)
from app.formats.generic import remote, virtual
from app.formats.generic.local import LocalFiles, LocalOptions
from app.formats.generic.paths import file_path, folder_path
from app.formats.generic.records import BLOB_REFERENCES, FileRecords
from app.formats.generic.shapes import http_date, iso, listing_limit


class GenericFormat(Format):
    name = "generic"
    kinds = frozenset({"local", "remote", "virtual"})
    blob_references = BLOB_REFERENCES
    migrations = resources.files(__package__) / "migrations"

    def options(self, kind: str) -> type[BaseModel]:
        if kind == "virtual":
            return virtual.VirtualGenericOptions
        return remote.RemoteGenericOptions if kind == "remote" else LocalOptions

    def bind(self, services: Services) -> None:
        super().bind(services)
        self.files = LocalFiles(services.cas, FileRecords(services.metadata.db))
        self.remote = remote.GenericRemote(services.remote, services.upstreams)
        self.virtual = virtual.GenericVirtual(self.files, self.remote, services.virtuals)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        if repo.kind == "remote":
            return await remote.serve(self.remote, request, repo, path)
        if repo.kind == "virtual":
            return await self.virtual.handle(request, repo, path)
        files = self.files
        local = repo.narrowed(LocalOptions)
        if request.method in ("GET", "HEAD"):
            if not path or path.endswith("/"):
                return await _listing(request, files, local, folder_path(path))
            return await _download(request, files, local, file_path(path))
        if request.method == "PUT":
            max_size = self.services.max_body_size
            return await _upload(request, files, local, file_path(path), max_size)
        if request.method == "DELETE":
            await files.delete(local, file_path(path))
            return web.Response(status=204)
        raise MethodNotAllowed(
            f"{request.method} is not supported here",
            headers={"Allow": "GET, HEAD, PUT, DELETE"},
        )

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        if repo.kind != "virtual":
            return await super().explain(repo, name, version)
        return await self.virtual.explain(repo, name)


def _expected_digest(request: web.Request) -> Digest | None:
    header = request.headers.get("X-Checksum-Sha256")
    if header is None:
        return None
    text = header.strip().lower()
    try:
        return parse_digest(text if ":" in text else f"sha256:{text}", allowed=("sha256",))
    except InvalidDigest as exc:
        raise BadRequest(f"X-Checksum-Sha256: {exc}") from None


async def _upload(
    request: web.Request,
    files: LocalFiles,
    repo: Repository[LocalOptions],
    path: str,
    max_size: int,
) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > max_size:
        raise PayloadTooLarge(f"body exceeds the limit of {max_size} bytes")
    if request.content_length is None and "chunked" not in request.headers.get(
        "Transfer-Encoding", ""
    ):
        raise LengthRequired("send Content-Length or a chunked body")
    stored = await files.put(
        repo,
        path,
        request_body(request),
        content_type=request.headers.get("Content-Type"),
        expected=_expected_digest(request),
        max_size=max_size,
    )
    body = _describe(request, repo, stored.file.path, stored.file.size, stored.file.blob_digest)
    body["checksums"] = {a: d.split(":", 1)[1] for a, d in stored.blob.digests.items()}
    return web.json_response(
        body,
        status=201 if stored.created else 200,
        headers={
            "Location": _uri(request, repo, stored.file.path),
            "ETag": f'"{stored.blob.digest}"',
        },
    )


async def _download(
    request: web.Request, files: LocalFiles, repo: Repository, path: str
) -> web.StreamResponse:
    row = await files.get(repo, path)
    if row is None:
        # A folder asked for without its trailing slash is listed all the same.
        if await files.records.has_folder(repo.id, path + "/"):
            return await _listing(request, files, repo, path + "/")
        raise NotFound(f"{path} not found in {repo.name}")
    cas = files.cas
    digest = row.blob_digest
    return await send_blob(
        request,
        BlobBody.stored(cas, digest, row.size, row.content_type),
        headers={
            "X-Checksum-Sha256": digest.removeprefix("sha256:"),
            "Last-Modified": http_date(row.updated_at),
        },
    )


async def _listing(
    request: web.Request, files: LocalFiles, repo: Repository, folder: str
) -> web.StreamResponse:
    limit = listing_limit(request)
    after = request.query.get("after", "")
    entries = await files.list(repo, folder, limit, after)
    children: list[dict[str, object]] = []
    for entry in entries:
        if entry.folder:
            children.append(
                {
                    "name": entry.name,
                    "type": "folder",
                    "uri": _uri(request, repo, folder + entry.name + "/"),
                }
            )
        else:
            assert entry.file is not None
            f = entry.file
            children.append(
                {"name": entry.name, "type": "file"}
                | _describe(request, repo, f.path, f.size, f.blob_digest)
                | {"content_type": f.content_type, "modified": iso(f.updated_at)}
            )
    headers = {}
    body: dict[str, object] = {"repository": repo.name, "path": folder, "children": children}
    if len(entries) == limit:
        token = entries[-1].key
        body["next"] = token
        query = urlencode({"limit": limit, "after": token})
        headers["Link"] = f'<{_uri(request, repo, folder)}?{query}>; rel="next"'
    response = web.json_response(body, headers=headers)
    return response


def _uri(request: web.Request, repo: Repository, path: str) -> str:
    return f"/repository/{repo.name}/{quote(path)}"


def _describe(
    request: web.Request, repo: Repository, path: str, size: int, digest: str
) -> dict[str, Any]:
    return {
        "repository": repo.name,
        "path": path,
        "size": size,
        "sha256": digest.removeprefix("sha256:"),
        "uri": _uri(request, repo, path),
    }
