"""Blob storage in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph RGW).

Objects live at ``<prefix>/<key>``. S3 makes an object visible only when a
PutObject or CompleteMultipartUpload succeeds, which gives the atomicity the
:class:`BlobStorage` contract asks for. Streams up to one part go up as a single
PutObject; longer ones as a multipart upload with ``concurrency`` parts in flight,
so memory stays near ``part_size * (concurrency + 1)`` whatever the object size.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from app.backends.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)
from app.config import S3StorageConfig
from pipelines.sources import received

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
DELETE_BATCH = 1000  # S3's limit per DeleteObjects
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
_PART_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """Turn client and transport failures into StorageError (ObjectNotFound for ``key``)."""
    try:
        yield
    except ClientError as exc:
        if key is not None and _code(exc) in _NOT_FOUND:
            raise ObjectNotFound(key) from None
        raise StorageError(f"S3 request failed: {exc}") from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise StorageError(f"S3 unreachable: {exc}") from exc


async def _body_chunks(body: Any, length: int) -> AsyncIterator[bytes]:
    """An object's bytes as the connection delivers them, checked against its length.

    aiobotocore's own ``read(n)`` joins buffered network reads into one bytes object
    per call: a copy of every byte, about a third of a download's CPU. Reading the
    aiohttp stream underneath hands each buffer over as received.
    """
    content = getattr(body.raw_stream, "content", None)
    if not isinstance(content, aiohttp.StreamReader):
        async for chunk in body.iter_chunks(READ_CHUNK):
            yield chunk
        return
    total = 0
    async for chunk in received(content):
        total += len(chunk)
        yield chunk
    if total != length:
        raise StorageError(f"S3 sent {total} bytes of {length}")


class S3Storage:
    # Class attributes so tests can exercise the multipart copy with small objects.
    max_single_copy = 5 * 1024**3  # S3's limit for CopyObject
    copy_part_size = 512 * 1024**2

    def __init__(self, config: S3StorageConfig) -> None:
        self.config = config
        self.bucket = config.bucket
        self._prefix = config.prefix.strip("/")
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._presigner: Any = None

    async def open(self) -> S3Storage:
        cfg = self.config
        boto_config = AioConfig(
            s3={
                "addressing_style": "path" if cfg.path_style else "auto",
                # Explicit, because botocore otherwise always hashes bodies sent over
                # plain http (about 1 s of CPU per GiB on the event loop).
                "payload_signing_enabled": cfg.sign_payload,
            },
            signature_version="s3v4",
            request_checksum_calculation=cfg.checksums,
            response_checksum_validation=cfg.checksums,
            connect_timeout=10,
            read_timeout=60,
            # Few attempts: a dead endpoint should fail a health check in seconds.
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, cfg.concurrency * 2),
        )
        session = AioSession()

        def client(endpoint: str | None) -> Any:
            return session.create_client(
                "s3",
                endpoint_url=endpoint,
                region_name=cfg.region,
                aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key,
                config=boto_config,
            )

        try:
            self._client = await self._stack.enter_async_context(client(cfg.endpoint))
            # Presigned URLs carry the endpoint clients use, which may not be ours.
            self._presigner = self._client
            if cfg.public_endpoint:
                public = client(cfg.public_endpoint)
                self._presigner = await self._stack.enter_async_context(public)
            if cfg.create_bucket:
                await self._ensure_bucket()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _ensure_bucket(self) -> None:
        with _errors():
            try:
                await self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in _NOT_FOUND and _code(exc) != "NoSuchBucket":
                    raise
            args: dict[str, Any] = {"Bucket": self.bucket}
            if self.config.region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
            try:
                await self._client.create_bucket(**args)
            except ClientError as exc:
                if _code(exc) not in _BUCKET_EXISTS:
                    raise

    def _name(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def _key(self, name: str) -> str:
        return name[len(self._prefix) + 1 :] if self._prefix else name

    def _multipart(self, name: str) -> _Multipart:
        # With checksums on, AWS wants the algorithm declared at creation and each
        # part's checksum repeated on completion, or it rejects the parts.
        checksum = "CRC32" if self.config.checksums == "when_supported" else None
        return _Multipart(self._client, self.bucket, name, self.config.concurrency, checksum)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        name = self._name(key)
        upload = self._multipart(name)
        # Parts are built in a BytesIO handed to botocore as is: a bytes body would be
        # wrapped in a BytesIO that aiohttp then copies, holding every part twice.
        part = io.BytesIO()
        part_size = self._part_size(1)
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    # A full part is sent only once more bytes follow, so a stream of
                    # exactly one part stays a single PutObject.
                    if part.tell() == part_size:
                        await upload.slot()
                        await upload.add(Body=_rewound(part))
                        part, part_size = io.BytesIO(), self._part_size(upload.parts + 1)
                    taken = min(part_size - part.tell(), len(view))
                    part.write(view[:taken])
                    view = view[taken:]
            if not upload.started:
                with _errors():
                    await self._client.put_object(Bucket=self.bucket, Key=name, Body=_rewound(part))
                return size
            await upload.add(Body=_rewound(part))
            await upload.complete()
        except BaseException:
            # Shielded so that a second cancellation cannot leave the parts behind.
            await asyncio.shield(upload.abort())
            raise
        return size

    def _part_size(self, number: int) -> int:
        """Size of part ``number``: doubled every 1,000 parts, so small parts (little
        memory) still reach S3's 10,000-part limit only for objects of many TiB."""
        return int(self.config.part_size) << ((number - 1) // 1000)

    async def get(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        name = self._name(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length == 0:
            # No valid Range means "zero bytes"; still report a missing object.
            if await self.stat(key) is None:
                raise ObjectNotFound(key)
            return
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            args["Range"] = f"bytes={offset}-{end}"
        with _errors(key):
            try:
                response = await self._client.get_object(**args)
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # offset at or past the end
                    return
                raise
            async with response["Body"] as body:
                async for chunk in _body_chunks(body, int(response["ContentLength"])):
                    yield chunk

    async def _head(self, name: str) -> dict[str, Any] | None:
        with _errors():
            try:
                response: dict[str, Any] = await self._client.head_object(
                    Bucket=self.bucket, Key=name
                )
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return None
                raise
        return response

    async def stat(self, key: str) -> ObjectInfo | None:
        head = await self._head(self._name(key))
        if head is None:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), head["LastModified"].astimezone(UTC))

    async def delete(self, key: str) -> bool:
        name = self._name(key)
        if await self._head(name) is None:
            return False
        with _errors():
            await self._client.delete_object(Bucket=self.bucket, Key=name)
        return True

    async def delete_many(self, keys: Sequence[str]) -> dict[str, StorageError]:
        names = {self._name(key): key for key in keys}
        failed: dict[str, StorageError] = {}
        batch = list(names)
        for start in range(0, len(batch), DELETE_BATCH):
            chunk = batch[start : start + DELETE_BATCH]
            objects = {"Objects": [{"Key": n} for n in chunk], "Quiet": True}
            try:
                with _errors():
                    answer = await self._client.delete_objects(Bucket=self.bucket, Delete=objects)
            except StorageError as exc:
                failed.update((names[n], exc) for n in chunk)
                continue
            for error in answer.get("Errors", []):
                if error.get("Code") not in _NOT_FOUND:
                    message = f"S3 refused to delete: {error.get('Code')} {error.get('Message')}"
                    failed[names[error["Key"]]] = StorageError(message)
        return failed

    async def list_stale(self, prefix: str, older_than: timedelta) -> AsyncIterator[ObjectInfo]:
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        cutoff = datetime.now(UTC) - older_than
        paginator = self._client.get_paginator("list_objects_v2")
        with _errors():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    modified = obj["LastModified"].astimezone(UTC)
                    if modified < cutoff:
                        yield ObjectInfo(self._key(obj["Key"]), int(obj["Size"]), modified)

    async def reap_incomplete(
        self, older_than: timedelta, dry_run: bool = False
    ) -> list[ObjectInfo]:
        cutoff = datetime.now(UTC) - older_than
        found: list[ObjectInfo] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        args = {"Bucket": self.bucket, **({"Prefix": f"{self._prefix}/"} if self._prefix else {})}
        with _errors():
            async for page in paginator.paginate(**args):
                for upload in page.get("Uploads", []):
                    begun = upload["Initiated"].astimezone(UTC)
                    if begun >= cutoff:
                        continue
                    ids = {
                        "Bucket": self.bucket,
                        "Key": upload["Key"],
                        "UploadId": upload["UploadId"],
                    }
                    size = await self._uploaded(ids)
                    if not dry_run:
                        try:
                            await self._client.abort_multipart_upload(**ids)
                        except ClientError as exc:
                            if _code(exc) != "NoSuchUpload":  # completed or aborted meanwhile
                                raise
                    found.append(ObjectInfo(self._key(upload["Key"]), size, begun))
        return found

    async def _uploaded(self, ids: dict[str, str]) -> int:
        """The bytes an incomplete multipart upload holds in its parts."""
        total = 0
        paginator = self._client.get_paginator("list_parts")
        try:
            async for page in paginator.paginate(**ids):
                total += sum(int(part["Size"]) for part in page.get("Parts", []))
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise
        return total

    async def copy(self, src: str, dst: str) -> None:
        source, target = self._name(src), self._name(dst)
        head = await self._head(source)
        if head is None:
            raise ObjectNotFound(src)
        size = int(head["ContentLength"])
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= self.max_single_copy:
            with _errors(src):
                await self._client.copy_object(
                    Bucket=self.bucket, Key=target, CopySource=copy_source
                )
            return
        upload = self._multipart(target)
        try:
            for start in range(0, size, self.copy_part_size):
                end = min(start + self.copy_part_size, size) - 1
                await upload.add(CopySource=copy_source, CopySourceRange=f"bytes={start}-{end}")
            await upload.complete()
        except BaseException:
            await asyncio.shield(upload.abort())
            raise

    async def move(self, src: str, dst: str) -> None:
        await self.copy(src, dst)
        await self.delete(src)

    def local_path(self, key: str) -> Path | None:
        return None

    async def download_url(self, key: str, content_type: str) -> str | None:
        name = self._name(key)
        if not self.config.redirect_downloads:
            return None
        params = {"Bucket": self.bucket, "Key": name, "ResponseContentType": content_type}
        with _errors(key):  # signing is local: no request is made
            url: str = await self._presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.config.redirect_expiry
            )
        return url

    async def ping(self) -> None:
        with _errors():
            await self._client.head_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _rewound(part: io.BytesIO) -> io.BytesIO:
    part.seek(0)
    return part


class _Multipart:
    """One multipart upload: parts (data or server-side copies) sent with bounded concurrency.

    The upload is created on the first part, so a short stream never creates one.
    """

    def __init__(
        self, client: Any, bucket: str, name: str, concurrency: int, checksum: str | None
    ) -> None:
        self._client = client
        self._ids = {"Bucket": bucket, "Key": name}
        self._concurrency = concurrency
        self._checksum = {"ChecksumAlgorithm": checksum} if checksum else {}
        self._created: asyncio.Task[dict[str, Any]] | None = None
        self._pending: set[asyncio.Task[dict[str, Any]]] = set()
        self._parts: list[dict[str, Any]] = []
        self._number = 0

    @property
    def started(self) -> bool:
        return self._created is not None

    @property
    def parts(self) -> int:
        return self._number

    async def slot(self) -> str:
        """Wait until another part may start; return the upload id (creating the upload)."""
        if self._created is None:
            self._created = asyncio.ensure_future(
                self._client.create_multipart_upload(**self._ids, **self._checksum)
            )
        # Shielded: if we are cancelled mid-request, abort() still learns the upload id.
        with _errors():
            upload_id: str = (await asyncio.shield(self._created))["UploadId"]
        if len(self._pending) >= self._concurrency:
            await self._reap(asyncio.FIRST_COMPLETED)
        return upload_id

    async def add(self, **part: Any) -> None:
        upload_id = await self.slot()
        self._number += 1
        send = self._send(upload_id, self._number, part)
        self._pending.add(asyncio.ensure_future(send))

    async def _send(self, upload_id: str, number: int, part: dict[str, Any]) -> dict[str, Any]:
        if "CopySource" in part:
            method = self._client.upload_part_copy
        else:
            method, part = self._client.upload_part, {**part, **self._checksum}
        with _errors():
            response = await method(**self._ids, UploadId=upload_id, PartNumber=number, **part)
        result = response.get("CopyPartResult", response)
        checksums = {name: result[name] for name in _PART_CHECKSUMS if name in result}
        return {"PartNumber": number, "ETag": result["ETag"], **checksums}

    async def _reap(self, when: str) -> None:
        done, self._pending = await asyncio.wait(self._pending, return_when=when)
        # result() re-raises a failed part, so the stream stops at the first error.
        self._parts.extend(task.result() for task in done)

    async def complete(self) -> None:
        assert self._created is not None
        if self._pending:
            await self._reap(asyncio.ALL_COMPLETED)
        parts = sorted(self._parts, key=lambda part: part["PartNumber"])
        with _errors():
            await self._client.complete_multipart_upload(
                **self._ids,
                UploadId=self._created.result()["UploadId"],
                MultipartUpload={"Parts": parts},
            )

    async def abort(self) -> None:
        if self._created is None:
            return
        for task in self._pending:
            task.cancel()
        await asyncio.wait({self._created, *self._pending})
        for task in self._pending:  # mark failures as seen; the caller's error wins
            if not task.cancelled():
                task.exception()
        if self._created.cancelled() or self._created.exception() is not None:
            return
        try:
            await self._client.abort_multipart_upload(
                **self._ids, UploadId=self._created.result()["UploadId"]
            )
        except Exception as exc:  # the original error matters more; log and move on
            log.warning("could not abort multipart upload of %s: %s", self._ids["Key"], exc)
