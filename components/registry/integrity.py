"""Checking a stored version against its manifest: the file set, then every file's bytes."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from components.registry.errors import ChecksumError, IntegrityError, ObjectNotFoundError
from components.registry.manifest import MANIFEST_NAME, ManifestEntry
from components.registry.storage import RegistryStorage


def check_file_set(
    storage: RegistryStorage, version_key: str, version: str, files: tuple[ManifestEntry, ...]
) -> None:
    """The version holds exactly the manifest's files (plus the manifest): none extra, none gone."""
    prefix = version_key + "/"
    stored = {key[len(prefix) :] for key in storage.list_keys(version_key)}
    listed = {e.path for e in files}
    unexpected = sorted(stored - listed - {MANIFEST_NAME})
    missing = sorted(listed - stored)
    if unexpected:
        raise IntegrityError(
            f"version {version} holds files not in its manifest: "
            f"{', '.join(storage.location(prefix + p) for p in unexpected)}; refusing to use it"
        )
    if missing:
        raise IntegrityError(
            f"version {version} lacks files its manifest lists: "
            f"{', '.join(storage.location(prefix + p) for p in missing)}"
        )


def copy_verified(
    storage: RegistryStorage,
    key: str,
    version: str,
    entry: ManifestEntry,
    sink: BinaryIO | None,
) -> None:
    """Stream ``key`` into ``sink`` (or nowhere), then compare its SHA-256 and size to ``entry``.

    The caller must discard what reached ``sink`` when this raises.
    """
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in storage.iter_chunks(key):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    except ObjectNotFoundError:
        raise IntegrityError(
            f"{storage.location(key)} is listed in the manifest of {version} but missing"
        ) from None
    actual = digest.hexdigest()
    if actual != entry.sha256 or size != entry.size:
        raise ChecksumError(
            f"checksum mismatch for {storage.location(key)} ({entry.path} of version "
            f"{version}): manifest says SHA-256 {entry.sha256[:16]}… and {entry.size} bytes, "
            f"found {actual[:16]}… and {size} bytes. The file was altered or corrupted; "
            "do not load it (re-register the model, or roll back)"
        )
