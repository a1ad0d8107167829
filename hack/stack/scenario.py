"""One running stack: the cluster, the simulator, autoscaler processes, and waits over all of them.

:class:`E2E` is what a scenario (an end-to-end test, the demo, a benchmark) drives: it starts
autoscalers, applies objects, waits with every needed process checked alive, describes the state for a
failure report, and cleans up everything it created.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from hack.devcluster.client import ApiError, DevKubeClient
from hack.stack.autoscaler import Autoscaler
from hack.stack.cloudsim import CloudSim
from hack.stack.kube import CLUSTER_SCOPED_EVENTS_NS, EVENTS_NS, NODEGROUPS, NODES, VPSIENODES, JsonObj
from hack.stack.objects import is_running, phase_of
from hack.stack.processes import Process, wait_until
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.cloudsim.bridge import MANAGED_BY_LABEL as SIM_NODE_LABEL

T = TypeVar("T")

CLEANUP_S: Final = 60.0


class E2E:
    """What a scenario needs: the cluster, the simulator, autoscaler processes and waits over them."""

    def __init__(
        self, client: DevKubeClient, kubeconfig: Path, namespace: str, workdir: Path, sim: CloudSim
    ) -> None:
        self.client = client
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        self.sim = sim
        self.autoscalers: list[Autoscaler] = []
        self.nodegroups: list[str] = []
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    # --- processes ---------------------------------------------------------------------------------
    def autoscaler(
        self, name: str = "autoscaler", *, start: bool = True, wait_leader: bool = True, **options: Any
    ) -> Autoscaler:
        """An autoscaler process; by default started and leading before this returns."""
        scaler = Autoscaler(
            workdir=self.workdir,
            name=name,
            kubeconfig=self.kubeconfig,
            sim=self.sim,
            namespace=self.namespace,
            lease_id=f"vpsie-autoscaler-{self.namespace}"[:63],
            **options,
        )
        self.autoscalers.append(scaler)
        if start:
            scaler.start()
            scaler.wait_ready()
            if wait_leader:
                scaler.wait_leader()
        return scaler

    def alive(self) -> list[Process]:
        """Processes that must stay up while a test waits (the running autoscalers and the cloud)."""
        procs = [self.sim.process]
        procs += [a.process for a in self.autoscalers if a.process is not None and a.process.alive()]
        return procs

    def wait(self, fetch: Callable[[], T], predicate: Callable[[T], Any], *, timeout: float, what: str) -> T:
        return wait_until(fetch, predicate, timeout=timeout, what=what, alive=self.alive())

    # --- objects -----------------------------------------------------------------------------------
    def apply_nodegroup(self, body: JsonObj) -> JsonObj:
        created = self.client.create(NODEGROUPS, body)
        self.nodegroups.append(body["metadata"]["name"])
        return created

    def get_nodegroup(self, name: str) -> JsonObj:
        return self.client.get(f"{NODEGROUPS}/{name}")

    def apply_deployment(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/apis/apps/v1/namespaces/{self.namespace}/deployments", body)

    def scale_deployment(self, name: str, replicas: int) -> None:
        self.client.merge_patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}", {"spec": {"replicas": replicas}}
        )

    def apply_pod(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/api/v1/namespaces/{self.namespace}/pods", body)

    def delete_pod(self, name: str) -> None:
        self.client.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        self.client.wait_gone(f"/api/v1/namespaces/{self.namespace}/pods/{name}")

    def apply_pdb(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/apis/policy/v1/namespaces/{self.namespace}/poddisruptionbudgets", body)

    def pods(self, app: str) -> list[JsonObj]:
        return self.client.list_objects(
            f"/api/v1/namespaces/{self.namespace}/pods", label_selector=f"app={app}"
        )

    def running_pods(self, app: str) -> list[JsonObj]:
        return [p for p in self.pods(app) if is_running(p)]

    def wait_pods_running(self, app: str, count: int, timeout: float = 60.0) -> list[JsonObj]:
        return self.wait(
            lambda: self.running_pods(app),
            lambda pods: len(pods) == count,
            timeout=timeout,
            what=f"{count} Running pods of {app}",
        )

    def vpsienodes(self, group: str | None = None) -> list[JsonObj]:
        selector = f"{NODEGROUP_LABEL}={group}" if group else None
        return self.client.list_objects(VPSIENODES, label_selector=selector)

    def live_vpsienodes(self, group: str | None = None) -> list[JsonObj]:
        """VPSieNodes that count as capacity: not being deleted, not Failed."""
        return [
            vn
            for vn in self.vpsienodes(group)
            if not vn["metadata"].get("deletionTimestamp") and phase_of(vn) not in ("Failed", "Deleting")
        ]

    def wait_vpsienodes(
        self, group: str, predicate: Callable[[list[JsonObj]], Any], *, timeout: float, what: str
    ) -> list[JsonObj]:
        return self.wait(lambda: self.vpsienodes(group), predicate, timeout=timeout, what=f"{group}: {what}")

    def group_nodes(self, group: str) -> list[JsonObj]:
        """Nodes the autoscaler labelled as members of ``group``."""
        return self.client.list_objects(NODES, label_selector=f"{NODEGROUP_LABEL}={group}")

    def sim_nodes(self) -> list[JsonObj]:
        """Every Node the simulator's bridge registered (booted instances)."""
        return self.client.list_objects(NODES, label_selector=f"{SIM_NODE_LABEL}=true")

    def node_of(self, pod: JsonObj) -> str:
        return str(pod["spec"]["nodeName"])

    def events(
        self,
        namespace: str | None = None,
        *,
        reason: str | None = None,
        regarding: str | None = None,
        kind: str | None = None,
        uid: str | None = None,
    ) -> list[JsonObj]:
        """events.k8s.io Events in ``namespace`` (default: the test's), filtered by reason/object.

        Events about cluster-scoped objects live in ``default`` and outlive the test that caused
        them; filter those by ``uid`` (see :meth:`nodegroup_events`) so an earlier test's object of
        the same name does not count.
        """
        ns = namespace or self.namespace
        found = []
        for ev in self.client.list_objects(EVENTS_NS.format(ns=ns)):
            ref = ev.get("regarding", {})
            if reason and ev.get("reason") != reason:
                continue
            if regarding and ref.get("name") != regarding:
                continue
            if kind and ref.get("kind") != kind:
                continue
            if uid and ref.get("uid") != uid:
                continue
            found.append(ev)
        return found

    def nodegroup_events(self, name: str, reason: str | None = None) -> list[JsonObj]:
        """Events about this test's NodeGroup ``name`` (by uid)."""
        uid = self.get_nodegroup(name)["metadata"]["uid"]
        return self.events(CLUSTER_SCOPED_EVENTS_NS, reason=reason, kind="NodeGroup", uid=uid)

    def wait_event(
        self,
        *,
        reason: str,
        namespace: str | None = None,
        regarding: str | None = None,
        kind: str | None = None,
        timeout: float = 30.0,
    ) -> list[JsonObj]:
        """Events in the test's namespace (pods) matching ``reason``, once there is at least one."""
        where = f"{kind or '*'}/{regarding or '*'} in {namespace or self.namespace}"
        return self.wait(
            lambda: self.events(namespace, reason=reason, regarding=regarding, kind=kind),
            bool,
            timeout=timeout,
            what=f"Event {reason} on {where}",
        )

    def wait_nodegroup_event(self, name: str, reason: str, timeout: float = 30.0) -> list[JsonObj]:
        return self.wait(
            lambda: self.nodegroup_events(name, reason),
            bool,
            timeout=timeout,
            what=f"Event {reason} on {name}",
        )

    def all_events_text(self) -> str:
        """This test's Events: its namespace, and cluster-scoped ones since it started."""
        lines = []
        for ns in (self.namespace, CLUSTER_SCOPED_EVENTS_NS):
            with contextlib.suppress(ApiError):
                for ev in self.events(ns):
                    when = ev.get("eventTime") or ev["metadata"].get("creationTimestamp") or ""
                    if ns == CLUSTER_SCOPED_EVENTS_NS and when < self.started:
                        continue
                    ref = ev.get("regarding", {})
                    lines.append(
                        f"{when} {ev.get('type')} {ev.get('reason')} {ref.get('kind')}/{ref.get('name')}: "
                        f"{ev.get('note')}"
                    )
        return "\n".join(sorted(lines))

    def snapshot(self) -> str:
        """Everything useful when a test fails: objects, cloud state, Events, process log tails."""
        parts = []
        with contextlib.suppress(Exception):
            for ng in self.client.list_objects(NODEGROUPS):
                parts.append(f"NodeGroup {ng['metadata']['name']}: status={json.dumps(ng.get('status'))}")
        with contextlib.suppress(Exception):
            for vn in self.vpsienodes():
                parts.append(f"VPSieNode {vn['metadata']['name']}: {json.dumps(vn.get('status'))}")
        with contextlib.suppress(Exception):
            for node in self.client.list_objects(NODES):
                parts.append(
                    f"Node {node['metadata']['name']}: labels={node['metadata'].get('labels')} "
                    f"taints={node['spec'].get('taints')}"
                )
        with contextlib.suppress(Exception):
            parts.append(f"cloud workers: {json.dumps(self.sim.workers(include_deleting=True))}")
        with contextlib.suppress(Exception):
            parts.append("Events:\n" + self.all_events_text())
        for scaler in self.autoscalers:
            for i, proc in enumerate(scaler.history):
                parts.append(f"--- {scaler.name} #{i} log tail ({proc.log}):\n{proc.tail(120)}")
        parts.append(f"--- cloudsim log tail:\n{self.sim.process.tail(40)}")
        return "\n".join(parts)

    # --- cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Leave nothing behind: workloads, processes, NodeGroups, VPSieNodes, instances and Nodes.

        The autoscaler is stopped first and its objects are removed by force (finalizers dropped),
        because a fresh simulator per test means no instance outlives the test anyway; that
        deleting a NodeGroup really deletes its instances is a test of its own
        (``test_seed_traps.py``), not a side effect of every teardown.
        """
        with contextlib.suppress(Exception):
            self.sim.clear_faults()
        ns = self.namespace
        with contextlib.suppress(ApiError):
            for dep in self.client.list_objects(f"/apis/apps/v1/namespaces/{ns}/deployments"):
                self.client.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/{dep['metadata']['name']}")
        for scaler in self.autoscalers:
            scaler.stop()
        self._force_delete()
        self.sim.stop()
        self.client.delete_nodes(f"{SIM_NODE_LABEL}=true")
        wait_until(
            lambda: self.sim_nodes() + self.vpsienodes() + self.client.list_objects(NODEGROUPS),
            lambda objs: not objs,
            timeout=CLEANUP_S,
            what="Nodes, VPSieNodes and NodeGroups gone",
        )

    def _force_delete(self) -> None:
        for path in (VPSIENODES, NODEGROUPS):
            for obj in self.client.list_objects(path):
                url = f"{path}/{obj['metadata']['name']}"
                with contextlib.suppress(ApiError):
                    self.client.merge_patch(url, {"metadata": {"finalizers": None}})
                with contextlib.suppress(ApiError):
                    self.client.delete(url)
