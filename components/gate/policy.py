"""The gate's policy: what STAN must achieve against PLE and the champion, read from YAML.

Unknown keys are errors, so a typo never silently loosens the gate. ``GatePolicy.default()``
reads ``default_policy.yaml`` beside this file; every field is documented there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Strict):
    """How one metric is gated across tasks."""

    margin: float = 0.0  # the lift a winning task must exceed (strictly)
    min_tasks: int | Literal["all"] = "all"  # how many tasks must win
    seesaw_tolerance: float = Field(0.0, ge=0)  # no task may lose more than this


class GatePolicy(_Strict):
    rules: dict[str, MetricRule]
    stage_metric: str = "auc"
    stage_tolerance: float = Field(0.01, ge=0)
    stage_min_samples: int = Field(500, ge=0)
    champion_metric: str = "auc"
    champion_tolerance: float = Field(0.001, ge=0)
    use_ci_lower_bound: bool = False
    confidence: float = Field(0.90, gt=0, lt=1)

    @classmethod
    def from_yaml(cls, path: str | Path) -> GatePolicy:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
            return cls.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read the gate policy: {exc}") from exc
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid gate policy:\n{exc}") from exc

    @classmethod
    def default(cls) -> GatePolicy:
        ref = resources.files("components.gate") / "default_policy.yaml"
        with resources.as_file(ref) as path:
            return cls.from_yaml(path)
