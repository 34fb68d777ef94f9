"""The model registry: immutable, checksummed model versions and one atomic champion pointer.

Storage is a local directory (default ``$STANFLOW_HOME/registry``) or ``s3://bucket/prefix``
(``STANFLOW_REGISTRY_URI``). See ``registry.py`` for the layout, ``champion.py`` for how the
pointer is switched safely, and ``README.md`` ("Model registry") for the CLI.
"""

from components.registry.errors import (
    ChecksumError,
    ConcurrentPromotionError,
    IntegrityError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)
from components.registry.factory import registry_from_settings, storage_from_uri
from components.registry.local import LocalStorage
from components.registry.records import ChampionRecord, VersionMetadata
from components.registry.registry import ModelRegistry, VersionInfo
from components.registry.s3 import S3Options, S3Storage
from components.registry.storage import RegistryStorage

__all__ = [
    "ChampionRecord",
    "ChecksumError",
    "ConcurrentPromotionError",
    "IntegrityError",
    "LocalStorage",
    "ModelRegistry",
    "RegistryError",
    "RegistryStorage",
    "S3Options",
    "S3Storage",
    "VersionExistsError",
    "VersionInfo",
    "VersionMetadata",
    "VersionNotFoundError",
    "registry_from_settings",
    "storage_from_uri",
]
