"""Informers against the real apiserver: order, broken watches, forced 410 with tombstones."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.kube_proxy import KubeProxy
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import CONFIGMAPS
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown

pytestmark = pytest.mark.cluster

SYNC_S = 30.0
EVENT_S = 30.0


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"t": "x"}},
            "data": data}  # fmt: skip


class Log:
    def __init__(self, informer: SharedInformer) -> None:
        self.events: list[tuple[str, str, str]] = []
        informer.add_event_handler(self.add, self.update, self.delete)

    def add(self, o: dict[str, Any]) -> None:
        self.events.append(("add", o["metadata"]["name"], (o.get("data") or {}).get("v", "")))

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", new["metadata"]["name"], (new.get("data") or {}).get("v", "")))

    def delete(self, o: dict[str, Any] | DeletedFinalStateUnknown) -> None:
        if isinstance(o, DeletedFinalStateUnknown):
            self.events.append(
                ("tombstone", o.obj["metadata"]["name"], (o.obj.get("data") or {}).get("v", ""))
            )
        else:
            self.events.append(("delete", o["metadata"]["name"], (o.get("data") or {}).get("v", "")))

    def of(self, name: str) -> list[tuple[str, str]]:
        return [(kind, v) for kind, n, v in self.events if n == name]


def informer(client: KubeClient, ns: str) -> SharedInformer:
    return SharedInformer(
        client, CONFIGMAPS, namespace=ns, label_selector="t=x", registry=CollectorRegistry()
    )


async def test_informer_sees_create_update_delete_in_order(kube: KubeClient, k8s_namespace: str) -> None:
    ns = k8s_namespace
    await kube.create(CONFIGMAPS, configmap("before", v="0"), ns)
    inf = informer(kube, ns)
    log = Log(inf)
    task = inf.start()
    try:
        await eventually(inf.has_synced, within=SYNC_S, what="initial sync")
        assert log.of("before") == [("add", "0")]
        await kube.create(CONFIGMAPS, configmap("c", v="1"), ns)
        for v in ("2", "3", "4"):
            await kube.merge_patch(CONFIGMAPS, "c", {"data": {"v": v}}, ns)
        await kube.delete(CONFIGMAPS, "c", ns)
        await eventually(lambda: ("delete", "4") in log.of("c"), within=EVENT_S, what="delete seen")
        assert log.of("c") == [
            ("add", "1"),
            ("update", "2"),
            ("update", "3"),
            ("update", "4"),
            ("delete", "4"),
        ]
        assert inf.store.get("c", ns) is None
        cached = inf.store.get("before", ns)
        assert cached is not None
        assert "managedFields" not in cached["metadata"]
    finally:
        task.cancel()


async def test_a_broken_watch_resumes_from_its_rv_without_losing_events(
    kube: KubeClient, proxied_kube: KubeClient, kube_proxy: KubeProxy, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    await kube.create(CONFIGMAPS, configmap("a", v="1"), ns)
    inf = informer(proxied_kube, ns)
    log = Log(inf)
    task = inf.start()
    try:
        await eventually(inf.has_synced, within=SYNC_S, what="initial sync")
        await eventually(lambda: kube_proxy.open_watches == 1, within=EVENT_S, what="watch streaming")
        lists_before = len(kube_proxy.lists)
        # Changes made while the watch connection is broken and the reconnect is held.
        await kube.merge_patch(CONFIGMAPS, "a", {"data": {"v": "2"}}, ns)
        await eventually(
            lambda: ("update", "2") in log.of("a"), within=EVENT_S, what="update before the break"
        )
        kube_proxy.hold_watches()
        assert kube_proxy.drop_watches() == 1
        await eventually(lambda: len(kube_proxy.watches) == 2, within=EVENT_S, what="re-watch attempted")
        await kube.merge_patch(CONFIGMAPS, "a", {"data": {"v": "3"}}, ns)
        await kube.create(CONFIGMAPS, configmap("b", v="1"), ns)
        await kube.delete(CONFIGMAPS, "a", ns)
        kube_proxy.release_watches()
        await eventually(
            lambda: ("delete", "3") in log.of("a"), within=EVENT_S, what="events after the break"
        )
        assert log.of("a") == [("add", "1"), ("update", "2"), ("update", "3"), ("delete", "3")]
        assert log.of("b") == [("add", "1")]
        assert len(kube_proxy.lists) == lists_before, "resumed from the last RV: no relist"
        assert kube_proxy.watches[1]["resourceVersion"] != kube_proxy.watches[0]["resourceVersion"]
    finally:
        task.cancel()


async def test_a_forced_410_relists_and_delivers_tombstones_for_what_vanished(
    kube: KubeClient, proxied_kube: KubeClient, kube_proxy: KubeProxy, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    for name in ("keep", "gone"):
        await kube.create(CONFIGMAPS, configmap(name, v="1"), ns)
    inf = informer(proxied_kube, ns)
    log = Log(inf)
    task = inf.start()
    try:
        await eventually(inf.has_synced, within=SYNC_S, what="initial sync")
        await eventually(lambda: kube_proxy.open_watches == 1, within=EVENT_S, what="watch streaming")
        lists_before = len(kube_proxy.lists)
        kube_proxy.hold_watches()
        assert kube_proxy.drop_watches() == 1
        await eventually(lambda: len(kube_proxy.watches) == 2, within=EVENT_S, what="re-watch held")
        await kube.delete(CONFIGMAPS, "gone", ns)
        await kube.create(CONFIGMAPS, configmap("new", v="1"), ns)
        kube_proxy.release_watches(gone=True)
        await eventually(
            lambda: log.of("gone")[-1:] == [("tombstone", "1")], within=EVENT_S, what="tombstone"
        )
        assert log.of("new") == [("add", "1")]
        assert log.of("keep")[0] == ("add", "1")
        assert len(kube_proxy.lists) == lists_before + 1, "exactly one relist after the 410"
        relist = kube_proxy.lists[-1]
        # The default list mode relists with a paginated consistent read (see runtime/reflector.py).
        assert (relist.get("resourceVersion"), relist.get("limit")) == ("", "500")
        assert sorted(o["metadata"]["name"] for o in inf.store.list()) == ["keep", "new"]
    finally:
        task.cancel()
