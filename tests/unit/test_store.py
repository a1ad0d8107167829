"""The cache keys objects like client-go and keeps its indices exact through every change."""

from __future__ import annotations

from typing import Any

import pytest

from vpsie_autoscaler.runtime.store import (
    DeletedFinalStateUnknown,
    Indexer,
    meta_namespace_key,
    split_key,
    unwrap,
)


def pod(name: str, ns: str = "default", node: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node}}


def by_node(obj: Any) -> list[str]:
    n = obj.get("spec", {}).get("nodeName")
    return [n] if n else []


def test_keys_are_namespace_slash_name_or_name() -> None:
    assert meta_namespace_key(pod("p", "ns")) == "ns/p"
    assert meta_namespace_key({"metadata": {"name": "n1"}}) == "n1"
    assert split_key("ns/p") == ("ns", "p")
    assert split_key("n1") == (None, "n1")
    with pytest.raises(KeyError):
        meta_namespace_key({"metadata": {}})


def test_indices_follow_updates_and_deletes() -> None:
    store = Indexer({"node": by_node})
    store.add(pod("a", node="n1"))
    store.add(pod("b", node="n1"))
    store.add(pod("c", "other", node="n2"))
    assert [p["metadata"]["name"] for p in store.by_index("node", "n1")] == ["a", "b"]
    assert store.index_keys("namespace", "other") == ["other/c"]
    old = store.update(pod("a", node="n2"))
    assert old is not None
    assert old["spec"]["nodeName"] == "n1"
    assert store.index_keys("node", "n1") == ["default/b"]
    assert store.index_keys("node", "n2") == ["default/a", "other/c"]
    store.delete(pod("b"))
    assert store.index_values("node") == ["n2"]
    assert len(store) == 2
    assert "default/a" in store


def test_indexers_added_later_index_existing_objects() -> None:
    store = Indexer()
    store.add(pod("a", node="n1"))
    store.add_indexers({"node": by_node})
    assert store.index_keys("node", "n1") == ["default/a"]
    with pytest.raises(ValueError, match="already exists"):
        store.add_indexers({"node": by_node})


def test_tombstones_key_and_unwrap_to_the_last_state() -> None:
    last = pod("a")
    tomb = DeletedFinalStateUnknown("default/a", last)
    assert meta_namespace_key(tomb) == "default/a"  # type: ignore[arg-type]
    assert unwrap(tomb) is last
    assert unwrap(last) is last
    assert tomb.get("metadata") == last["metadata"]


def test_the_version_counts_every_change_and_nothing_else() -> None:
    store = Indexer()
    seen = [store.version]
    store.add(pod("a"))
    seen.append(store.version)
    store.update(pod("a", node="n1"))  # an update, even to the same key
    seen.append(store.version)
    store.list()
    store.get("a", "default")
    seen.append(store.version)  # reads change nothing
    store.delete_key("default/missing")
    seen.append(store.version)  # neither does deleting what is not there
    store.delete(pod("a"))
    seen.append(store.version)
    assert seen == [0, 1, 2, 2, 2, 3]
