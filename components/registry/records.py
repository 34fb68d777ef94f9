"""The JSON records of the registry: a version's metadata and the champion pointer.

JSON only: nothing the registry reads is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from components.registry.errors import RegistryError


@dataclass(frozen=True)
class VersionMetadata:
    """What the caller knows about a model being registered (written to ``metadata.json``)."""

    model_family: str  # "stan", "ple", "mmoe": which architecture the weights belong to
    data_fingerprint: str  # identifies the training data (e.g. a hash of the feature partitions)
    gate_passed: bool  # the promotion gate's verdict for this model
    gate_reasons: tuple[str, ...] = ()  # why the gate decided so, one sentence each
    parent: str | None = None  # the version this one was fine-tuned or derived from, if any
    extra: dict[str, Any] = field(default_factory=dict)  # any other JSON-able facts (run id, …)

    def __post_init__(self) -> None:
        for name in ("model_family", "data_fingerprint"):
            if not str(getattr(self, name)).strip():
                raise RegistryError(f"version metadata: {name} must not be empty")
        try:
            json.dumps(self.extra)
        except TypeError as exc:
            raise RegistryError(f"version metadata: extra must be JSON-able: {exc}") from exc

    def to_json(
        self, *, created_at: str, champion_at_registration: str | None, content_digest: str = ""
    ) -> bytes:
        body = asdict(self)
        if content_digest:
            body["content_digest"] = content_digest
        body["gate_reasons"] = list(self.gate_reasons)
        body["created_at"] = created_at
        body["champion_at_registration"] = champion_at_registration
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


Action = Literal["promote", "rollback"]


@dataclass(frozen=True)
class ChampionRecord:
    """One state of the champion pointer; the history keeps every state ever written.

    ``previous`` / ``previous_sequence`` name the state a rollback returns to. After a promotion
    that is the state it replaced; after a rollback it is the restored state's own ``previous``,
    so repeated rollbacks walk further back. ``replaced`` is always the champion just before.
    """

    version: str
    previous: str | None
    previous_sequence: int | None
    replaced: str | None
    sequence: int  # 1, 2, 3, … one per switch; the compare-and-swap makes it gap-free
    action: Action
    reason: str
    promoted_at: str  # UTC, ISO 8601
    by: str  # user@host that switched it
    promotion_id: str  # unique per switch: recognises our own write after a retried request

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ChampionRecord:
        try:
            body = json.loads(data)
            names = {f.name for f in fields(cls)}
            if set(body) != names:
                raise ValueError(f"fields {sorted(set(body) ^ names)} missing or unexpected")
            record = cls(**body)
            if record.action not in ("promote", "rollback") or record.sequence < 1:
                raise ValueError(f"bad action {record.action!r} or sequence {record.sequence}")
        except (ValueError, TypeError, AttributeError) as exc:
            raise RegistryError(f"{where}: not a valid champion record: {exc}") from exc
        return record
