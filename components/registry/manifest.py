"""A version's manifest (the SHA-256 and size of every file) and version ids.

A version id is ``<UTC created_at, YYYYMMDDTHHMMSS.mmmZ>-<12 hex of SHA-256(MANIFEST.json)>``, e.g.
``20260314T101502.117Z-3fa4c1d2e5b6``: sortable by time to the millisecond, and it pins the
manifest, which pins every file. So a pointer naming a version pins that version's exact bytes;
editing the manifest to match an edited file is detected too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import BinaryIO

from components.registry.errors import ChecksumError, IntegrityError, RegistryError

MANIFEST_NAME = "MANIFEST.json"
METADATA_NAME = "metadata.json"
MANIFEST_FORMAT = 1
VERSION_ID_PATTERN = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-([0-9a-f]{12})$")
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a version: its path inside the version, SHA-256 (hex) and size in bytes."""

    path: str
    sha256: str
    size: int


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """(hex SHA-256, size) of a binary stream, read in chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_relative_path(path: str, where: str) -> str:
    """``path`` if it is a clean relative POSIX path that stays inside its version directory."""
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or "\\" in path
    ):
        raise IntegrityError(f"{where}: file path {path!r} is not a clean relative path")
    return path


def manifest_bytes(entries: Iterable[ManifestEntry], version_created_at: str) -> bytes:
    """Canonical manifest JSON (sorted entries and keys): the same files give the same bytes."""
    files = [
        {"path": e.path, "sha256": e.sha256, "size": e.size}
        for e in sorted(entries, key=lambda e: e.path)
    ]
    body = {"format": MANIFEST_FORMAT, "created_at": version_created_at, "files": files}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def parse_manifest(data: bytes, where: str) -> dict[str, ManifestEntry]:
    """The entries of a manifest by path; ``IntegrityError`` naming ``where`` if malformed."""
    try:
        body = json.loads(data)
        if body.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {body.get('format')!r}")
        entries = [
            ManifestEntry(
                path=check_relative_path(str(f["path"]), where),
                sha256=str(f["sha256"]),
                size=int(f["size"]),
            )
            for f in body["files"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed manifest: {exc}") from exc
    by_path = {e.path: e for e in entries}
    if len(by_path) != len(entries):
        raise IntegrityError(f"{where}: manifest lists a file twice")
    return by_path


def version_id(created_at: datetime, manifest: bytes) -> str:
    stamp = created_at.strftime("%Y%m%dT%H%M%S") + f".{created_at.microsecond // 1000:03d}Z"
    return f"{stamp}-{hashlib.sha256(manifest).hexdigest()[:12]}"


def check_version_id(version: str) -> str:
    """``version`` if well formed; a ``RegistryError`` saying what a version id looks like."""
    if not VERSION_ID_PATTERN.match(version):
        raise RegistryError(
            f"invalid version id {version!r}: expected <YYYYMMDDTHHMMSS.mmmZ>-<12 hex digits>, "
            "as printed by `stanflow registry list`"
        )
    return version


def check_manifest_matches_id(version: str, manifest: bytes, where: str) -> None:
    """The manifest's hash must be the one the version id was minted from."""
    expected = check_version_id(version).rsplit("-", 1)[1]
    actual = hashlib.sha256(manifest).hexdigest()[:12]
    if actual != expected:
        raise ChecksumError(
            f"{where}: manifest SHA-256 starts {actual}, but version {version} was registered "
            f"with {expected}: the manifest was altered; do not use this version"
        )
