"""A registry in an S3 bucket (AWS or S3-compatible: SeaweedFS, MinIO) via boto3.

Credentials come from boto3's standard chain (environment, shared files, instance roles); the
endpoint and region from the ``STANFLOW_S3_*`` settings. Retries and timeouts are set explicitly
(``S3Options``) rather than left to botocore's defaults. Every failure becomes a ``RegistryError``
naming the operation, bucket and key.

The champion pointer uses S3 conditional writes: ``IfMatch=<ETag>`` to replace it only if nobody
changed it since it was read, ``IfNoneMatch="*"`` to create it only if absent. AWS S3 supports both
since 2024; SeaweedFS 4.x does too (checked against ``weed`` 4.48 under concurrent writers by
``tests/integration/test_registry_s3.py``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.registry.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RegistryError,
)
from components.registry.storage import CHUNK_BYTES, TaggedObject

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# 409 ConditionalRequestConflict: AWS's answer when two conditional writes overlap.
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


@dataclass(frozen=True)
class S3Options:
    """How hard the S3 client tries before a registry operation fails."""

    # Retries after the first try (botocore's "max_attempts"; "standard" mode: backoff + jitter).
    max_retries: int = 4
    connect_timeout_s: float = 5.0  # a loopback or in-cluster endpoint answers well within this
    read_timeout_s: float = 60.0  # per socket read; large weight files stream in 1 MiB chunks


class S3Storage:
    """Registry objects below ``s3://bucket/prefix``. The client is created on first use."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        options: S3Options | None = None,
    ) -> None:
        if not bucket:
            raise RegistryError("S3 registry URI has no bucket: use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.options = options or S3Options()
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def client(self) -> Any:
        """The boto3 S3 client (thread-safe; one per storage)."""
        with self._client_lock:
            if self._client_obj is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"max_attempts": self.options.max_retries, "mode": "standard"},
                    connect_timeout=self.options.connect_timeout_s,
                    read_timeout=self.options.read_timeout_s,
                )
                self._client_obj = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
            return self._client_obj

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """Turn botocore failures into registry errors naming the bucket and key."""
        from botocore.exceptions import BotoCoreError, ClientError

        full_key = self._key(key)
        where = f"bucket '{self.bucket}', key '{full_key}'"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "unknown"
            message = error.get("Message", "") or str(exc)
            if code in _NOT_FOUND:
                raise ObjectNotFoundError(f"S3 object not found: {where}") from exc
            if code in _PRECONDITION:
                raise PreconditionFailedError(
                    f"S3 conditional {operation} lost ({code}): {where} changed since it was read"
                ) from exc
            hint = " (create the bucket, or fix STANFLOW_REGISTRY_URI)"
            raise RegistryError(
                f"S3 {operation} failed for {where}: {code}: {message}"
                f"{hint if code == 'NoSuchBucket' else ''}"
            ) from exc
        except BotoCoreError as exc:
            raise RegistryError(
                f"S3 {operation} failed for {where} at endpoint "
                f"{self.endpoint_url or 'AWS default'} after {self.options.max_retries + 1} "
                f"tries: {exc} (check STANFLOW_S3_ENDPOINT_URL and AWS credentials)"
            ) from exc

    def read_bytes(self, key: str) -> bytes:
        with self._errors("get_object", key):
            response = self.client().get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        with self._errors("get_object", key):
            response = self.client().get_object(Bucket=self.bucket, Key=self._key(key))
            yield from response["Body"].iter_chunks(CHUNK_BYTES)

    def read_tagged(self, key: str) -> TaggedObject | None:
        try:
            with self._errors("get_object", key):
                response = self.client().get_object(Bucket=self.bucket, Key=self._key(key))
                return TaggedObject(data=response["Body"].read(), tag=response["ETag"])
        except ObjectNotFoundError:
            return None

    def upload_file(self, key: str, source: Path) -> None:
        # Managed transfer: multipart for large files; an object appears only when complete.
        with self._errors("upload_file", key):
            self.client().upload_file(str(source), self.bucket, self._key(key))

    def write_new(self, key: str, data: bytes) -> None:
        try:
            with self._errors("put_object", key):
                self.client().put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
        except PreconditionFailedError as exc:
            raise ObjectExistsError(
                f"S3 object already exists: bucket '{self.bucket}', key '{self._key(key)}'"
            ) from exc

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> None:
        condition = {"IfNoneMatch": "*"} if expected_tag is None else {"IfMatch": expected_tag}
        with self._errors("put_object", key):
            self.client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)

    def list_keys(self, prefix: str) -> list[str]:
        full_prefix = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._errors("list_objects_v2", prefix + "/"):
            paginator = self.client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)
