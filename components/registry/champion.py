"""The champion pointer: one object (``champion.json``), switched by compare-and-swap.

Every switch reads the pointer and its tag, writes the new state with ``write_if(tag)``, and
then appends the state to the history (``history/<sequence>-<version>.json``, create-only).
Two writers that read the same state cannot both win: the loser's conditional write fails, it
changes nothing and raises ``ConcurrentPromotionError``. The history is written after the
pointer; if a writer dies in between, the next switch first writes the missing record from the
pointer it read (the pointer holds the full state), so the history never has a gap.
"""

from __future__ import annotations

import getpass
import logging
import socket
import uuid
from collections.abc import Callable
from datetime import datetime

from components.registry.errors import (
    ConcurrentPromotionError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RegistryError,
)
from components.registry.records import Action, ChampionRecord
from components.registry.storage import RegistryStorage

log = logging.getLogger(__name__)

CHAMPION_KEY = "champion.json"
HISTORY_PREFIX = "history"


def history_key(sequence: int, version: str) -> str:
    return f"{HISTORY_PREFIX}/{sequence:06d}-{version}.json"


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ChampionPointer:
    """Reads and switches the champion pointer of one registry."""

    def __init__(self, storage: RegistryStorage, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.clock = clock

    def read(self) -> tuple[ChampionRecord | None, str | None]:
        """The current state and its tag; ``(None, None)`` before the first promotion."""
        tagged = self.storage.read_tagged(CHAMPION_KEY)
        if tagged is None:
            return None, None
        where = self.storage.location(CHAMPION_KEY)
        return ChampionRecord.from_json(tagged.data, where), tagged.tag

    def history(self) -> list[ChampionRecord]:
        """Every state the pointer has had, oldest first."""
        return [
            ChampionRecord.from_json(self.storage.read_bytes(key), self.storage.location(key))
            for key in self.storage.list_keys(HISTORY_PREFIX)
            if key.endswith(".json")
        ]

    def promote(self, version: str, reason: str) -> ChampionRecord:
        current, tag = self.read()
        if current is not None and current.version == version:
            log.info("version %s is already the champion; pointer unchanged", version)
            return current
        new = self._record(
            version=version,
            previous=current.version if current else None,
            previous_sequence=current.sequence if current else None,
            current=current,
            action="promote",
            reason=reason,
        )
        return self._switch(current, tag, new)

    def rollback_target(self) -> tuple[ChampionRecord, ChampionRecord, str | None]:
        """(current state, the state a rollback restores, current tag)."""
        current, tag = self.read()
        if current is None:
            raise RegistryError(
                f"no champion at {self.storage.location(CHAMPION_KEY)}: nothing to roll back"
            )
        if current.previous is None or current.previous_sequence is None:
            raise RegistryError(
                f"champion {current.version} has no earlier champion to roll back to "
                f"(see `stanflow registry history`); promote a version instead"
            )
        key = history_key(current.previous_sequence, current.previous)
        try:
            target = ChampionRecord.from_json(
                self.storage.read_bytes(key), self.storage.location(key)
            )
        except ObjectNotFoundError as exc:
            raise RegistryError(
                f"history record {self.storage.location(key)} is missing, so the rollback "
                f"target of champion {current.version} is unknown; promote a version instead"
            ) from exc
        return current, target, tag

    def rollback(
        self, current: ChampionRecord, target: ChampionRecord, tag: str | None, reason: str
    ) -> ChampionRecord:
        new = self._record(
            version=target.version,
            previous=target.previous,
            previous_sequence=target.previous_sequence,
            current=current,
            action="rollback",
            reason=reason,
        )
        return self._switch(current, tag, new)

    def _record(
        self,
        *,
        version: str,
        previous: str | None,
        previous_sequence: int | None,
        current: ChampionRecord | None,
        action: Action,
        reason: str,
    ) -> ChampionRecord:
        if not reason.strip():
            raise RegistryError(f"a {action} needs a reason (it is kept in the history)")
        return ChampionRecord(
            version=version,
            previous=previous,
            previous_sequence=previous_sequence,
            replaced=current.version if current else None,
            sequence=current.sequence + 1 if current else 1,
            action=action,
            reason=reason.strip(),
            promoted_at=self.clock().isoformat(),
            by=_actor(),
            promotion_id=uuid.uuid4().hex,
        )

    def _switch(
        self, current: ChampionRecord | None, tag: str | None, new: ChampionRecord
    ) -> ChampionRecord:
        if current is not None:
            self._append_history(current)  # heals a gap left by a writer that died mid-switch
        try:
            self.storage.write_if(CHAMPION_KEY, new.to_json(), tag)
        except PreconditionFailedError as exc:
            winner, _ = self.read()
            if not self._landed(new, winner):
                shown = f"{winner.version} ({winner.action} by {winner.by})" if winner else "none"
                raise ConcurrentPromotionError(
                    f"the champion at {self.storage.location(CHAMPION_KEY)} changed while "
                    f"switching it to {new.version}: it is now {shown}. Nothing was changed; "
                    f"check `stanflow registry history` and re-run if still wanted"
                ) from exc
        self._append_history(new)
        log.info(
            "champion is now %s (%s #%d: %s)", new.version, new.action, new.sequence, new.reason
        )
        return new

    def _landed(self, new: ChampionRecord, winner: ChampionRecord | None) -> bool:
        """Whether our write landed after all (a retried request whose first try succeeded and
        saw our own change, possibly already replaced by a later switch that recorded it)."""
        if winner is not None and winner.promotion_id == new.promotion_id:
            return True
        key = history_key(new.sequence, new.version)
        try:
            recorded = ChampionRecord.from_json(
                self.storage.read_bytes(key), self.storage.location(key)
            )
        except ObjectNotFoundError:
            return False
        return recorded.promotion_id == new.promotion_id

    def _append_history(self, record: ChampionRecord) -> None:
        key = history_key(record.sequence, record.version)
        try:
            self.storage.write_new(key, record.to_json())
        except ObjectExistsError:
            existing = self.storage.read_bytes(key)
            if existing != record.to_json():
                raise RegistryError(
                    f"history record {self.storage.location(key)} differs from the champion "
                    f"state it should hold; the registry history was edited by hand"
                ) from None
