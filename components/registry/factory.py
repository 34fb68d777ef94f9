"""Pick the registry's storage from its URI: ``s3://bucket/prefix`` or a local path."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from components.registry.errors import RegistryError
from components.registry.local import LocalStorage
from components.registry.registry import ModelRegistry
from components.registry.s3 import S3Options, S3Storage
from components.registry.storage import RegistryStorage
from stanflow.settings import Settings


def storage_from_uri(
    uri: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str = "us-east-1",
    s3_options: S3Options | None = None,
) -> RegistryStorage:
    """``S3Storage`` for ``s3://bucket[/prefix]``, ``LocalStorage`` for a path or ``file://``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Storage(
            parsed.netloc,
            parsed.path.lstrip("/"),
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            options=s3_options,
        )
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise RegistryError(
            f"registry URI {uri!r}: scheme {parsed.scheme!r} is not supported; "
            "use a local path or s3://bucket/prefix (STANFLOW_REGISTRY_URI)"
        )
    return LocalStorage(Path(uri))


def registry_from_settings(
    settings: Settings, *, s3_options: S3Options | None = None
) -> ModelRegistry:
    """The registry the settings name (``STANFLOW_REGISTRY_URI``, default ``<home>/registry``)."""
    storage = storage_from_uri(
        settings.resolved_registry_uri,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_options=s3_options,
    )
    return ModelRegistry(storage)
