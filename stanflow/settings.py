"""The typed ``STANFLOW_*`` settings: one object, read from the environment, any layer may import.

Every setting has a default that works on a laptop with nothing configured. The README's
"Settings" table is generated from the same field descriptions (``stanflow settings``).

``STANFLOW_PROFILE`` is the one switch between the laptop (``local``) and the production stack
(``production``): there the Feast online store defaults to Redis and the model registry must be
on S3; the Airflow side of the profile is in :mod:`stanflow.cli_airflow`. A variable set
explicitly always wins over a profile default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    profile: Literal["local", "production"] = Field(
        "local",
        description="Deployment profile. `production`: Airflow metadata on PostgreSQL with "
        "LocalExecutor, Feast online store on Redis, registry on S3 (README, Production profile).",
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
        "sqlite",
        description="Feast online store: SQLite file under <home>, or Redis. "
        "Default under the production profile: redis.",
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
    home_pvc: str | None = Field(
        None,
        description="PersistentVolumeClaim holding STANFLOW_HOME in the cluster, mounted at the "
        "same path in distributed training jobs (needed by `pipeline submit --trainjob-workers`).",
    )
    trainjob_namespace: str = Field(
        "stanflow",
        description="Namespace the pipeline creates its Kubeflow PyTorchJobs in (the one holding "
        "STANFLOW_HOME_PVC; infra/k8s).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Logging level of the stanflow command and tasks."
    )

    @field_validator("registry_uri", "s3_endpoint_url", "kfp_host", "home_pvc", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: object) -> object:
        """Production serves features from Redis unless STANFLOW_ONLINE_STORE says otherwise."""
        if isinstance(data, Mapping) and data.get("profile") == "production":
            data = {"online_store": "redis", **data}
        return data

    @model_validator(mode="after")
    def _production_registry_is_on_s3(self) -> Settings:
        if self.profile == "production" and not (self.registry_uri or "").startswith("s3://"):
            got = self.registry_uri or "unset, i.e. the local <home>/registry"
            raise ValueError(
                f"{ENV_PREFIX}REGISTRY_URI must be an s3://bucket/prefix URI under "
                f"{ENV_PREFIX}PROFILE=production (got {got}); set it to the bucket that keeps the "
                f"models, and {ENV_PREFIX}S3_ENDPOINT_URL for SeaweedFS or MinIO"
            )
        return self

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
            problems = "; ".join(_problem(e) for e in exc.errors())
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


def _problem(error: Mapping) -> str:
    """One validation error, named by its variable (checks across fields name theirs)."""
    if not error["loc"]:
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {error['msg']}"


def get_settings() -> Settings:
    """The settings of this process, read from the environment now (cheap; no caching surprises)."""
    return Settings.from_env()
