"""Names: event types and state keys <-> NIDs (tables `event_types`, `state_keys`).

Names are immutable once assigned and shared by every room, so they are cached in process
(`StoreCaches`); a batch remembers what it assigned or read and publishes it after commit.
Assignment is the backend's (`_assign_names`): PostgreSQL assigns in a short transaction of
its own, SQLite inside the batch's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable

from processor.errors import CorruptState, StorageError
from processor.nids import EventTypeNID, StateKeyNID
from processor.storage.batch_core import BatchCore
from processor.storage.tables import NameKind

__all__ = ["NamesMixin"]


class NamesMixin(BatchCore):
    @abstractmethod
    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        """NIDs for `names`, inserting the missing ones; one round trip."""

    def _select_nids_by_name(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        return dict(
            self._select_in(
                f"SELECT {kind.name_column}, {kind.nid_column} FROM {kind.table}"
                f" WHERE {kind.name_column} {{values}}",
                names,
                "text",
            )
        )

    def _select_names_by_nid(self, kind: NameKind, nids: list[int]) -> dict[int, str]:
        return dict(
            self._select_in(
                f"SELECT {kind.nid_column}, {kind.name_column} FROM {kind.table}"
                f" WHERE {kind.nid_column} {{values}}",
                nids,
                "bigint",
            )
        )

    def _nids(self, kind: NameKind, names: Iterable[str], *, assign: bool) -> dict[str, int]:
        caches = self._caches
        cache = caches.type_nids if kind is NameKind.EVENT_TYPE else caches.key_nids
        local = self.pending.type_nids if kind is NameKind.EVENT_TYPE else self.pending.key_nids
        found: dict[str, int] = {}
        missing: list[str] = []
        with caches.lock:
            for name in names:
                if name in found:
                    continue
                nid = local.get(name) or cache.get(name)
                if nid is None:
                    missing.append(name)
                else:
                    found[name] = nid
        if missing:
            missing = list(dict.fromkeys(missing))
            got = (
                self._assign_names(kind, missing)
                if assign
                else self._select_nids_by_name(kind, missing)
            )
            if assign and len(got) != len(missing):
                lost = [n for n in missing if n not in got]
                raise StorageError(f"{kind.table}: no NID assigned for {lost[:5]!r}")
            local.update(got)
            found.update(got)
        return found

    def event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]:
        return self._nids(NameKind.EVENT_TYPE, types, assign=True)  # type: ignore[return-value]

    def state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]:
        return self._nids(NameKind.STATE_KEY, keys, assign=True)  # type: ignore[return-value]

    def select_state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]:
        return self._nids(NameKind.STATE_KEY, keys, assign=False)  # type: ignore[return-value]

    def select_event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]:
        return self._nids(NameKind.EVENT_TYPE, types, assign=False)  # type: ignore[return-value]

    def _names(self, kind: NameKind, nids: Iterable[int]) -> dict[int, str]:
        caches = self._caches
        cache = caches.type_names if kind is NameKind.EVENT_TYPE else caches.key_names
        local = self.pending.type_nids if kind is NameKind.EVENT_TYPE else self.pending.key_nids
        found: dict[int, str] = {}
        missing: list[int] = []
        with caches.lock:
            for nid in nids:
                name = cache.get(nid)
                if name is None:
                    missing.append(nid)
                else:
                    found[nid] = name
        if missing:
            missing = list(dict.fromkeys(missing))
            got = self._select_names_by_nid(kind, missing)
            lost = [n for n in missing if n not in got]
            if lost:
                raise CorruptState(f"unknown {kind.table} NIDs {sorted(lost)[:10]}")
            found.update(got)
            local.update({name: nid for nid, name in got.items()})
        return found

    def event_type_names(self, nids: Iterable[EventTypeNID]) -> dict[EventTypeNID, str]:
        return self._names(NameKind.EVENT_TYPE, nids)  # type: ignore[return-value]

    def state_key_names(self, nids: Iterable[StateKeyNID]) -> dict[StateKeyNID, str]:
        return self._names(NameKind.STATE_KEY, nids)  # type: ignore[return-value]
