"""The informer cache: objects keyed ``namespace/name`` (or ``name``), with secondary indices.

Upstream analogue: client-go ``tools/cache`` ``threadSafeMap`` + ``Indexer`` (``index.go``). No locks:
only the informer task mutates a store, readers run on the same event loop.

Objects in the store are the informer's own dicts. **Treat them as read-only** (copy before
editing, e.g. ``copy.deepcopy``): client-go ships a mutation detector because cache corruption by
callers is the classic bug, and copying every read would cost more than the whole cache.

``DeletedFinalStateUnknown`` is what a delete handler receives when an object vanished while the
watch was down: the relist noticed it is gone but not how it ended, so only the last known state is
available (``delta_fifo.go`` ``Replace``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
KeyFunc = Callable[[Mapping[str, Any]], str]
IndexFunc = Callable[[Mapping[str, Any]], list[str]]

NAMESPACE_INDEX = "namespace"
ObjList = list[Obj]
KeyList = list[str]


def meta_namespace_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones (client-go's key)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    namespace = meta.get("namespace")
    if not name:
        raise KeyError("object has no metadata.name")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of :func:`meta_namespace_key`: ``(namespace or None, name)``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def namespace_index(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return [namespace] if namespace else []


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """A delete observed only through a relist: ``obj`` is the last state the cache had."""

    key: str
    obj: Obj

    def get(self, name: str, default: Any = None) -> Any:
        """Read like the wrapped object, so mappers can treat tombstones and objects alike."""
        return self.obj.get(name, default)


def unwrap(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    """The object itself, or the last known state inside a tombstone."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


class Indexer:
    """A keyed object store with named indices (client-go ``Indexer``)."""

    def __init__(
        self, indexers: Mapping[str, IndexFunc] | None = None, key_func: KeyFunc = meta_namespace_key
    ):
        self._key = key_func
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self.version = 0
        """Counts the changes (every add, update and delete that removed something): whoever derives
        something from the whole store may reuse it while the count stays the same."""
        if indexers:
            self.add_indexers(indexers)

    def key_of(self, obj: Mapping[str, Any]) -> str:
        return self._key(obj)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add indices (allowed at any time; existing objects are indexed immediately)."""
        for name, fn in indexers.items():
            if name in self._indexers:
                raise ValueError(f"index {name!r} already exists")
            self._indexers[name] = fn
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    # -- mutation (the informer only) -------------------------------------------------------------

    def add(self, obj: Obj) -> Obj | None:
        """Insert or replace; returns the previous object under that key, if any."""
        key = self._key(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._reindex(key, old, obj)
        self.version += 1
        return old

    update = add

    def delete(self, obj: Mapping[str, Any]) -> Obj | None:
        """Remove by the object's key; returns what was stored, if anything."""
        return self.delete_key(self._key(obj))

    def delete_key(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._reindex(key, old, None)
            self.version += 1
        return old

    def _reindex(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            old_values = set(fn(old)) if old is not None else set()
            new_values = set(fn(new)) if new is not None else set()
            for value in old_values - new_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in new_values - old_values:
                index.setdefault(value, set()).add(key)

    # -- reads ------------------------------------------------------------------------------------

    def get_by_key(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> ObjList:
        return list(self._items.values())

    def list_keys(self) -> KeyList:
        return list(self._items)

    def by_index(self, index_name: str, value: str) -> ObjList:
        """Objects whose index function returned ``value`` (unknown index → KeyError)."""
        keys = self._indices[index_name].get(value, ())
        return [self._items[k] for k in sorted(keys)]

    def index_keys(self, index_name: str, value: str) -> KeyList:
        return sorted(self._indices[index_name].get(value, ()))

    def index_values(self, index_name: str) -> KeyList:
        return sorted(self._indices[index_name])

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))

    def keys_not_in(self, keys: Iterable[str]) -> KeyList:
        """Stored keys absent from ``keys`` (what a relist lost)."""
        present = set(keys)
        return [k for k in self._items if k not in present]
