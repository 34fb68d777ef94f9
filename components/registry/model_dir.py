"""Reading the directory a caller registers: which files, their hashes, and what is refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.registry.errors import RegistryError
from components.registry.local import TEMP_SUFFIX
from components.registry.manifest import (
    MANIFEST_NAME,
    METADATA_NAME,
    ManifestEntry,
    check_relative_path,
    sha256_stream,
)

# Formats that unpickle on load: the registry stores safetensors weights instead.
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"})


@dataclass(frozen=True)
class SourceFile:
    """A file to register: where it is, its manifest entry, and its stat when hashed."""

    source: Path
    entry: ManifestEntry
    mtime_ns: int

    def check_unchanged(self) -> None:
        """The file must not change between hashing and upload, or the manifest would lie."""
        stat = self.source.stat()
        if stat.st_size != self.entry.size or stat.st_mtime_ns != self.mtime_ns:
            raise RegistryError(
                f"{self.source} changed while it was being registered; "
                "wait for the writer to finish and register again"
            )


def scan_model_dir(model_dir: Path) -> list[SourceFile]:
    """Every regular file below ``model_dir``, hashed; refuses what the registry must not hold."""
    if not model_dir.is_dir():
        raise RegistryError(f"model directory {model_dir} does not exist or is not a directory")
    files: list[SourceFile] = []
    for path in sorted(model_dir.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(model_dir).as_posix()
        if path.is_symlink() or not path.is_file():
            raise RegistryError(f"{path}: only regular files can be registered (no links)")
        if rel in (MANIFEST_NAME, METADATA_NAME):
            raise RegistryError(
                f"{path}: {rel} is written by the registry; pass metadata as VersionMetadata"
            )
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise RegistryError(
                f"{path}: {path.suffix} files are pickles, which the registry never stores; "
                "save weights with safetensors (safetensors.torch.save_file)"
            )
        if path.name.endswith(TEMP_SUFFIX):
            raise RegistryError(f"{path}: names ending in {TEMP_SUFFIX} are reserved")
        check_relative_path(rel, str(model_dir))
        stat = path.stat()
        with path.open("rb") as handle:
            sha256, size = sha256_stream(handle)
        files.append(
            SourceFile(path, ManifestEntry(path=rel, sha256=sha256, size=size), stat.st_mtime_ns)
        )
    if not any(f.entry.path.endswith(".safetensors") for f in files):
        raise RegistryError(
            f"{model_dir} holds no .safetensors file; a version needs its weights "
            "(e.g. model.safetensors)"
        )
    return files
