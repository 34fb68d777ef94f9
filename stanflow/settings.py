"""The typed ``STANFLOW_*`` settings: one object, read from the environment, any layer may import.

Every setting has a default that works on a laptop with nothing configured. The README's
"Settings" table is generated from the same field descriptions (``stanflow settings``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "STANFLOW_"
# The repository root when run from a checkout (editable install); else the working directory.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
REPO_ROOT = _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").exists() else Path.cwd()


class SettingsError(ValueError):
    """A ``STANFLOW_*`` variable has a value that cannot be used."""


class Settings(BaseModel):
    """Where stanflow keeps its data and which services it talks to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(
        REPO_ROOT / ".stanflow",
        description="Data home: raw events, features, runs, the local registry. Git-ignored.",
    )
    preset: Literal["tiny", "small", "wechat"] = Field(
        "small",
        description="World simulated when no raw data exist (`make run`, `stanflow simulate`).",
    )
    registry_uri: str | None = Field(
        None,
        description="Model registry: a local path or s3://bucket/prefix. Default: <home>/registry.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (SeaweedFS, MinIO). Default: AWS's own endpoints."
    )
    s3_region: str = Field("us-east-1", description="Region for the S3 client.")
    online_store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="Feast online store: SQLite file under <home>, or Redis."
    )
    redis_url: str = Field(
        "127.0.0.1:6379",
        description="Redis connection string for the online store (host:port[,db=N]).",
    )
    kfp_host: str | None = Field(
        None,
        description="Kubeflow Pipelines API URL. Unset: pipelines run with the KFP local runner.",
    )
    component_image: str = Field(
        "ghcr.io/stanflow/stanflow:0.1.0",
        description="Image the Kubeflow components run on in a cluster (baked in at compile time).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Logging level of the stanflow command and tasks."
    )

    @field_validator("registry_uri", "s3_endpoint_url", "kfp_host", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_registry_uri(self) -> str:
        return self.registry_uri or str(self.home / "registry")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``STANFLOW_<FIELD>`` variable; unknown ``STANFLOW_*`` names are refused."""
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for key, value in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in cls.model_fields:
                known = ", ".join(ENV_PREFIX + f.upper() for f in cls.model_fields)
                raise SettingsError(f"unknown setting {key}; known settings: {known}")
            values[name] = value
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from exc
        if not settings.home.is_absolute():
            settings = settings.model_copy(update={"home": (Path.cwd() / settings.home).resolve()})
        return settings

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting: the README table and `--help`."""
        rows = []
        for name, field in cls.model_fields.items():
            default = field.default
            if isinstance(default, Path):
                default = "<repo>/" + default.name if default.parent == REPO_ROOT else str(default)
            rows.append(
                (
                    ENV_PREFIX + name.upper(),
                    "(unset)" if default is None else str(default),
                    field.description or "",
                )
            )
        return rows


def get_settings() -> Settings:
    """The settings of this process, read from the environment now (cheap; no caching surprises)."""
    return Settings.from_env()
