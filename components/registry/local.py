"""A registry on the local filesystem: atomic writes (temp file + ``os.replace``), ``flock`` CAS.

* Every write goes to a temp file in the target's directory, is fsynced, then renamed into place
  (``os.replace``: atomic on POSIX), so a reader never sees a partial file.
* ``write_new`` links the temp file to its final name: ``os.link`` fails if the name exists, so
  create-only needs no lock.
* ``write_if`` (the champion pointer) takes an exclusive ``fcntl.flock`` on ``<root>/.lock`` around
  read-compare-replace; the tag is the content's SHA-256. ``flock`` works between processes and
  between threads (each call opens its own file description). It needs a filesystem with working
  ``flock``: local disks do; some network filesystems do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from components.registry.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RegistryError,
)
from components.registry.storage import CHUNK_BYTES, TaggedObject

# Temp files end with this; listings skip them (a crashed writer may leave one behind).
TEMP_SUFFIX = ".stanflow-tmp"
LOCK_NAME = ".lock"


class LocalStorage:
    """Registry objects as files below ``root``. Nothing is created until the first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def location(self, key: str) -> str:
        return str(self._path(key))

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise RegistryError(f"invalid registry key {key!r}: must be a relative path")
        return self.root.joinpath(*parts)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"registry file {path} does not exist") from None
        except OSError as exc:
            raise RegistryError(f"cannot read registry file {path}: {exc}") from exc

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(f"registry file {path} does not exist") from None
        except OSError as exc:
            raise RegistryError(f"cannot read registry file {path}: {exc}") from exc
        with handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def read_tagged(self, key: str) -> TaggedObject | None:
        try:
            data = self.read_bytes(key)
        except ObjectNotFoundError:
            return None
        return TaggedObject(data=data, tag=hashlib.sha256(data).hexdigest())

    def upload_file(self, key: str, source: Path) -> None:
        dest = self._path(key)
        with self._temp_beside(dest) as tmp:
            try:
                with source.open("rb") as src, tmp.open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except OSError as exc:
                raise RegistryError(f"cannot copy {source} to registry file {dest}: {exc}") from exc

    def write_new(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        with self._temp_beside(dest) as tmp:
            self._write_temp(tmp, data, dest)
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise ObjectExistsError(f"registry file {dest} already exists") from None
            except OSError as exc:
                raise RegistryError(f"cannot create registry file {dest}: {exc}") from exc
        self._fsync_dir(dest.parent)

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> None:
        dest = self._path(key)
        with self._locked():
            current = self.read_tagged(key)
            if (current.tag if current else None) != expected_tag:
                state = "exists" if current else "does not exist"
                raise PreconditionFailedError(
                    f"registry file {dest} changed since it was read (it now {state})"
                )
            with self._temp_beside(dest) as tmp:
                self._write_temp(tmp, data, dest)
                try:
                    os.replace(tmp, dest)
                except OSError as exc:
                    raise RegistryError(f"cannot replace registry file {dest}: {exc}") from exc
            self._fsync_dir(dest.parent)

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.endswith(TEMP_SUFFIX)
        )

    @contextlib.contextmanager
    def _temp_beside(self, dest: Path) -> Iterator[Path]:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create registry directory {dest.parent}: {exc}") from exc
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _write_temp(tmp: Path, data: bytes, dest: Path) -> None:
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise RegistryError(f"cannot write registry file {dest}: {exc}") from exc

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # Make the rename itself durable, not only the file's contents.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.root / LOCK_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+b")
        except OSError as exc:
            raise RegistryError(f"cannot open registry lock file {lock_path}: {exc}") from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
