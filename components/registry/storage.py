"""The storage a registry lives on: a small object-store protocol with two implementations.

Keys are relative, ``/``-separated paths below the registry root (``versions/<id>/MANIFEST.json``).
Two conditional writes carry the registry's guarantees:

* ``write_new`` creates an object only if it does not exist (immutable manifests, history records);
* ``write_if`` replaces an object only if it still has the tag read before (the champion pointer),
  or creates it only if absent when the expected tag is ``None``: a compare-and-swap.

``LocalStorage`` (a directory) and ``S3Storage`` (a bucket and prefix) implement it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

# Read and upload in chunks this large: bounded memory for multi-GB weight files.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class TaggedObject:
    """An object's bytes and the opaque tag a later ``write_if`` compares against."""

    data: bytes
    tag: str


@runtime_checkable
class RegistryStorage(Protocol):
    """Where registry objects live. Every error is a ``RegistryError`` naming the object."""

    @property
    def uri(self) -> str:
        """The registry root: a directory path or ``s3://bucket/prefix``."""
        ...

    def location(self, key: str) -> str:
        """The full address of ``key``, for messages and ``champion_uri``."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; ``ObjectNotFoundError`` if absent."""
        ...

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """The object in chunks (for hashing large files); ``ObjectNotFoundError`` if absent."""
        ...

    def read_tagged(self, key: str) -> TaggedObject | None:
        """The object and its tag, or ``None`` if absent."""
        ...

    def upload_file(self, key: str, source: Path) -> None:
        """Copy a local file to ``key`` atomically (readers never see half an object)."""
        ...

    def write_new(self, key: str, data: bytes) -> None:
        """Create ``key``; ``ObjectExistsError`` if it already exists."""
        ...

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> None:
        """Replace ``key`` only if its tag is ``expected_tag`` (``None``: only if absent).

        ``PreconditionFailedError`` if another writer got there first.
        """
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key below ``prefix`` (a folder-like prefix without trailing slash), sorted."""
        ...
