"""The model registry: immutable, checksummed versions and one champion pointer.

Layout below the registry root (a directory or ``s3://bucket/prefix``)::

    versions/<version>/model.safetensors, config.json, metrics.json, …   the registered files
    versions/<version>/metadata.json     family, data fingerprint, gate decision, created_at, …
    versions/<version>/MANIFEST.json     SHA-256 and size of every file above (written last)
    champion.json                        the champion pointer (one object, compare-and-swap)
    history/<sequence>-<version>.json    every state the pointer has had (append-only)
    contents/<digest>                    the first version registered with that content

A version's *content digest* hashes every registered file except the training log
(``metrics.json``: timings differ between otherwise identical runs), so the same weights, config
and preprocessor trained twice have the same digest. ``register_or_reuse`` returns the version
that already holds that content instead of adding a copy: rerunning a day leaves the registry
(and, since promoting the champion again is a no-op, the champion) as one run left it.

A version exists once its manifest exists; the manifest is created only if absent, so a version
is never overwritten. Reading a version checks the manifest against the version id and every file
against the manifest; weights are safetensors and metadata JSON, so nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.registry.champion import CHAMPION_KEY, ChampionPointer
from components.registry.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)
from components.registry.integrity import check_file_set, copy_verified
from components.registry.manifest import (
    MANIFEST_NAME,
    METADATA_NAME,
    VERSION_ID_PATTERN,
    ManifestEntry,
    check_manifest_matches_id,
    check_version_id,
    manifest_bytes,
    parse_manifest,
    version_id,
)
from components.registry.model_dir import scan_model_dir
from components.registry.records import ChampionRecord, VersionMetadata
from components.registry.storage import RegistryStorage

log = logging.getLogger(__name__)

VERSIONS_PREFIX = "versions"
CONTENTS_PREFIX = "contents"
# Files that record how training went rather than what was trained: not part of the identity.
TRAINING_LOG_FILES = frozenset({"metrics.json"})


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as ``show`` reports it."""

    version: str
    uri: str  # the version's directory: a path or s3://bucket/prefix/versions/<version>
    files: tuple[ManifestEntry, ...]
    metadata: dict[str, Any]


class ModelRegistry:
    """Register, read, promote and roll back model versions on any ``RegistryStorage``."""

    def __init__(
        self, storage: RegistryStorage, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.pointer = ChampionPointer(storage, clock)

    @property
    def uri(self) -> str:
        return self.storage.uri

    @property
    def pointer_uri(self) -> str:
        """Where the champion pointer object lives."""
        return self.storage.location(CHAMPION_KEY)

    def _key(self, version: str, name: str = "") -> str:
        return f"{VERSIONS_PREFIX}/{version}/{name}" if name else f"{VERSIONS_PREFIX}/{version}"

    # -- versions ------------------------------------------------------------------------------

    def register(self, model_dir: Path, metadata: VersionMetadata) -> str:
        """Copy ``model_dir``'s files into a new immutable version; return its id."""
        files = scan_model_dir(Path(model_dir))
        return self._register(files, metadata, content_digest([f.entry for f in files]))

    def register_or_reuse(self, model_dir: Path, metadata: VersionMetadata) -> tuple[str, bool]:
        """``(version, reused)``: the version already holding this content, or a new one.

        Content is every file but the training log (:data:`TRAINING_LOG_FILES`); a reused
        version keeps its own metadata (versions are immutable).
        """
        files = scan_model_dir(Path(model_dir))
        digest = content_digest([f.entry for f in files])
        existing = self.find_content(digest)
        if existing is not None:
            log.info("content %s is already registered as %s; reusing it", digest[:12], existing)
            return existing, True
        return self._register(files, metadata, digest), False

    def find_content(self, digest: str) -> str | None:
        """The version registered with content ``digest``, if any (its manifest must exist)."""
        tagged = self.storage.read_tagged(f"{CONTENTS_PREFIX}/{digest}")
        if tagged is None:
            return None
        version = check_version_id(tagged.data.decode().strip())
        if self.storage.read_tagged(self._key(version, MANIFEST_NAME)) is None:
            return None  # an interrupted registration: its version never came to exist
        return version

    def _register(self, files, metadata: VersionMetadata, digest: str) -> str:
        now = self.clock().astimezone(UTC)
        created = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the id's precision
        champion, _ = self.pointer.read()
        meta = metadata.to_json(
            created_at=created.isoformat(timespec="milliseconds"),
            champion_at_registration=champion.version if champion else None,
            content_digest=digest,
        )
        entries = [f.entry for f in files]
        entries.append(_entry_for_bytes(METADATA_NAME, meta))
        manifest = manifest_bytes(entries, created.isoformat(timespec="milliseconds"))
        version = version_id(created, manifest)
        if self.storage.read_tagged(self._key(version, MANIFEST_NAME)) is not None:
            raise VersionExistsError(
                f"version {version} already exists at {self.storage.location(self._key(version))}"
                "; versions are immutable: register again to get a new version"
            )
        # Only a registration of this same id could rewrite these files, and the id hashes the
        # manifest, so it carries the same bytes. The create-only manifest, written last, is what
        # makes the version exist; an interrupted registration leaves files no listing shows.
        for f in files:
            self.storage.upload_file(self._key(version, f.entry.path), f.source)
            f.check_unchanged()
        self._write_once(version, METADATA_NAME, meta)
        self._write_once(version, MANIFEST_NAME, manifest)
        with contextlib.suppress(ObjectExistsError):  # the first with this content keeps it
            self.storage.write_new(f"{CONTENTS_PREFIX}/{digest}", version.encode())
        log.info(
            "registered %s (%d files) at %s",
            version,
            len(entries),
            self.storage.location(self._key(version)),
        )
        return version

    def _write_once(self, version: str, name: str, data: bytes) -> None:
        key = self._key(version, name)
        try:
            self.storage.write_new(key, data)
        except ObjectExistsError:
            raise VersionExistsError(
                f"version {version} was registered concurrently ({self.storage.location(key)} "
                "already exists); versions are never overwritten"
            ) from None

    def list_versions(self) -> list[str]:
        """Every registered version id, oldest first."""
        versions = []
        for key in self.storage.list_keys(VERSIONS_PREFIX):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST_NAME and VERSION_ID_PATTERN.match(parts[1]):
                versions.append(parts[1])
        return sorted(versions)

    def show(self, version: str) -> VersionInfo:
        """The version's manifest and metadata (both checked; the other files are not read)."""
        entries = self._manifest(version)
        meta_key = self._key(version, METADATA_NAME)
        if METADATA_NAME not in entries:
            raise IntegrityError(f"{self.storage.location(meta_key)} is not in the manifest")
        meta = io.BytesIO()
        copy_verified(self.storage, meta_key, version, entries[METADATA_NAME], meta)
        return VersionInfo(
            version=version,
            uri=self.storage.location(self._key(version)),
            files=tuple(entries[p] for p in sorted(entries)),
            metadata=json.loads(meta.getvalue()),
        )

    def verify(self, version: str) -> VersionInfo:
        """Check every file of the version against its manifest without keeping a copy."""
        info = self.show(version)
        check_file_set(self.storage, self._key(version), version, info.files)
        for entry in info.files:
            copy_verified(self.storage, self._key(version, entry.path), version, entry, None)
        return info

    def fetch(self, version: str, dest: Path) -> Path:
        """Download a version to ``dest`` (absent or empty), verifying every checksum.

        Files are written to a temporary sibling directory that becomes ``dest`` only when all
        of them match the manifest, so a failed fetch leaves nothing behind.
        """
        dest = Path(dest).resolve()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise RegistryError(f"fetch destination {dest} exists and is not an empty directory")
        info = self.show(version)
        check_file_set(self.storage, self._key(version), version, info.files)
        staging = dest.with_name(f".{dest.name}.fetch-{uuid.uuid4().hex}")
        try:
            for entry in info.files:
                target = staging.joinpath(*entry.path.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as sink:
                    copy_verified(
                        self.storage, self._key(version, entry.path), version, entry, sink
                    )
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("fetched %s to %s (%d files verified)", version, dest, len(info.files))
        return dest

    def _manifest(self, version: str) -> dict[str, ManifestEntry]:
        key = self._key(check_version_id(version), MANIFEST_NAME)
        try:
            data = self.storage.read_bytes(key)
        except ObjectNotFoundError:
            raise VersionNotFoundError(
                f"no version {version} in registry {self.uri}; "
                "`stanflow registry list` shows the registered versions"
            ) from None
        where = self.storage.location(key)
        check_manifest_matches_id(version, data, where)
        return parse_manifest(data, where)

    # -- champion ------------------------------------------------------------------------------

    def champion(self) -> str | None:
        """The champion's version id, or ``None`` before the first promotion."""
        record, _ = self.pointer.read()
        return record.version if record else None

    def champion_record(self) -> ChampionRecord | None:
        return self.pointer.read()[0]

    def champion_uri(self) -> str | None:
        """The champion version's directory (path or s3 URI), or ``None``."""
        version = self.champion()
        return self.storage.location(self._key(version)) if version else None

    def history(self) -> list[ChampionRecord]:
        """Every promotion and rollback, oldest first."""
        return self.pointer.history()

    def promote(self, version: str, reason: str, *, force: bool = False) -> ChampionRecord:
        """Make ``version`` the champion after verifying all its files.

        A version the gate rejected is refused unless ``force`` (an operator's override, kept in
        the history with its reason). Promoting the current champion changes nothing and returns
        its record. ``ConcurrentPromotionError`` if another switch won a race.
        """
        current = self.champion_record()
        if current is not None and current.version == version:
            log.info("%s is already the champion; nothing to switch", version)
            return current
        info = self.verify(version)
        if not info.metadata.get("gate_passed", False) and not force:
            reasons = "; ".join(info.metadata.get("gate_reasons", [])) or "no reasons recorded"
            raise RegistryError(
                f"version {version} did not pass the promotion gate ({reasons}); "
                "promote it anyway with force=True (CLI: --force)"
            )
        return self.pointer.promote(version, reason)

    def rollback(self, reason: str) -> ChampionRecord:
        """Switch the champion back to the one before it, as recorded in the history."""
        current, target, tag = self.pointer.rollback_target()
        self.verify(target.version)
        return self.pointer.rollback(current, target, tag, reason)


def content_digest(entries: list[ManifestEntry]) -> str:
    """SHA-256 over the sorted ``path sha256`` lines of every file but the training log."""
    lines = sorted(f"{e.path} {e.sha256}\n" for e in entries if e.path not in TRAINING_LOG_FILES)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _entry_for_bytes(path: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
