"""Every knob of the lifecycle world simulator, as one typed config read from YAML.

Per-stage knobs are :class:`PerStage` blocks (``new``, ``wander``, ``stick``, ``loyal``). Unknown
keys are refused, so a typo in a YAML file is an error rather than a silently ignored setting.
Presets live beside this file in ``presets/<name>.yaml``.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRESETS = ("tiny", "small", "wechat")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerStage(_Strict):
    """One value per lifecycle stage, in lifecycle order."""

    new: float
    wander: float
    stick: float
    loyal: float

    def array(self) -> np.ndarray:
        return np.array([self.new, self.wander, self.stick, self.loyal], dtype=np.float64)


class StageMix(_Strict):
    """Share of pre-existing users in each stage on day 0 (new users arrive later, as ``new``)."""

    wander: float = Field(ge=0)
    stick: float = Field(ge=0)
    loyal: float = Field(ge=0)
    churned: float = Field(ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> StageMix:
        total = self.wander + self.stick + self.loyal + self.churned
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"initial_stage_mix must sum to 1, got {total:.4f}")
        return self


class Activity(_Strict):
    """How often each stage shows up, and for how long."""

    sessions_per_day: PerStage  # Poisson mean, times the user's own activity multiplier
    impressions_per_session: PerStage  # mean; at least one impression per session
    user_activity_sigma: float = Field(0.5, ge=0)  # lognormal spread of the per-user multiplier
    affinity_exposure: float = Field(
        0.35, ge=0, le=1
    )  # share of impressions from the favourite category


class Behaviour(_Strict):
    """Per-stage logits of each task, and which item attribute drives each (DESIGN.md).

    Item attributes enter as z-scores: popularity (log), content length (log), price (log), and
    the user's category affinity (log of preference relative to uniform).
    """

    click_base: PerStage
    click_popularity: PerStage
    click_length: PerStage
    click_affinity: PerStage
    watch_base: PerStage  # logit of the watched fraction of the content, given a click
    watch_length: PerStage
    watch_affinity: PerStage
    order_base: PerStage  # logit of an order, given a click
    order_price: PerStage
    order_affinity: PerStage
    long_stay_threshold_s: float = Field(30.0, gt=0)  # stay_seconds >= this is a long stay


class Transitions(_Strict):
    """The latent-stage Markov chain, driven by each user's own engagement.

    Daily engagement = (clicks + 2 long stays + 8 orders) / impressions; its exponential moving
    average ``e`` (decay per day) is compared with the stage's midpoint: z = (e - mid) / mid.
    Progress happens with probability ``progress * sigmoid(sensitivity * z)``; regression and churn
    with ``regress`` / ``churn`` times ``sigmoid(-sensitivity * z)``; a churned user returns
    (as a wanderer) with probability ``return_rate`` a day.
    """

    engagement_decay: float = Field(0.7, ge=0, lt=1)
    engagement_mid: PerStage
    sensitivity: float = Field(4.0, ge=0)
    progress: PerStage  # new->wander, wander->stick, stick->loyal (loyal's is unused)
    regress: PerStage  # stick->wander, loyal->stick (new's and wander's are unused)
    churn: PerStage
    return_rate: float = Field(0.03, ge=0, le=1)
    max_new_days: int = Field(10, ge=1)  # a new user is a wanderer at the latest after this


class Noise(_Strict):
    """User-level and impression-level randomness (what makes observables noisy)."""

    user_click_bias: float = Field(0.35, ge=0)
    user_watch_bias: float = Field(0.4, ge=0)
    user_order_bias: float = Field(0.4, ge=0)
    impression_logit: float = Field(0.4, ge=0)  # extra logit noise on every draw
    affinity_concentration: float = Field(0.5, gt=0)  # Dirichlet alpha of category preferences


class WorldConfig(_Strict):
    """The lifecycle world: size, time span, stage dynamics, behaviour, noise, seed."""

    name: str = "custom"
    seed: int = 0
    n_users: int = Field(gt=0)  # users who exist by the last day (pre-existing + arrivals)
    n_items: int = Field(gt=0)
    n_categories: int = Field(20, gt=0)
    n_days: int = Field(gt=0)
    start_date: dt.date = dt.date(2026, 1, 1)
    initial_user_share: float = Field(0.7, ge=0, le=1)  # signed up before day 0
    initial_stage_mix: StageMix
    activity: Activity
    behaviour: Behaviour
    transitions: Transitions
    noise: Noise = Noise()

    @property
    def days(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=i) for i in range(self.n_days)]

    @classmethod
    def from_yaml(cls, path: str | Path) -> WorldConfig:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read the world config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a world config is a YAML mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid world config:\n{exc}") from exc

    @classmethod
    def preset(cls, name: str) -> WorldConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
        ref = resources.files("stan_model.data") / "presets" / f"{name}.yaml"
        with resources.as_file(ref) as path:
            return cls.from_yaml(path)

    def with_overrides(self, **changes) -> WorldConfig:
        """A copy with top-level fields replaced (``seed``, ``n_users`` ...), re-validated."""
        return WorldConfig.model_validate({**self.model_dump(), **changes})
