"""Errors of the model registry: each names the registry location involved and what to do."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """A registry operation failed; the message names the object (path or bucket and key)."""


class ObjectNotFoundError(RegistryError):
    """A registry object does not exist."""


class ObjectExistsError(RegistryError):
    """A create-only write found the object already there."""


class PreconditionFailedError(RegistryError):
    """A conditional write lost: the object changed since it was read."""


class VersionNotFoundError(RegistryError):
    """No version with this id is registered."""


class VersionExistsError(RegistryError):
    """A version with this id is already registered; versions are never overwritten."""


class IntegrityError(RegistryError):
    """A version's files do not match its manifest (missing, unexpected or altered files)."""


class ChecksumError(IntegrityError):
    """A file's SHA-256 or size differs from the manifest: it was altered or corrupted."""


class ConcurrentPromotionError(RegistryError):
    """The champion pointer changed between reading and switching it; nothing was changed."""
