"""A workload that keeps changing on a seeded schedule.

Deployments of 1.5-cpu pods (two per Advanced node), pinned to their NodeGroup by the group label:
plain ones, ones behind a PodDisruptionBudget, and one whose pods say
``cluster-autoscaler.kubernetes.io/safe-to-evict: "false"``. Every few seconds one Deployment is scaled
to a random size in its range (a PDB-guarded one never below its ``minAvailable``). With
``ephemeral``, a third NodeGroup comes and goes with its own Deployment, so NodeGroup deletion (drain of
running pods, deletion of its instances) happens under fire too.

:meth:`Workload.finish` sets the final sizes; :meth:`Workload.needed_nodes` is then the node count a
group needs: ``ceil(pods / 2)`` (a PDB-guarded Deployment ends one above its minimum, so its pods can
be moved one at a time and the group can consolidate).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from hack.devcluster.client import ApiError
from tests.e2e.harness import (
    ADVANCED,
    E2E,
    NODEGROUPS,
    JsonObj,
    deployment,
    pod_disruption_budget,
    vm_nodegroup,
)
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, SAFE_TO_EVICT_ANNOTATION

POD_CPU = "1500m"
PODS_PER_NODE = 2  # 1.5 cpu pods on a 4-cpu Advanced node
EPHEMERAL_GROUP = "chaos-eph"
EPHEMERAL_APP = "e-web"


@dataclass(frozen=True)
class App:
    name: str
    group: str
    low: int
    high: int
    final: int
    min_available: int | None = None  # a PDB with this minAvailable
    pinned: bool = False  # safe-to-evict: "false"

    def body(self, replicas: int) -> JsonObj:
        body = deployment(
            self.name, replicas, cpu=POD_CPU, memory="1Gi", node_selector={NODEGROUP_LABEL: self.group}
        )
        if self.pinned:
            body["spec"]["template"]["metadata"]["annotations"] = {SAFE_TO_EVICT_ANNOTATION: "false"}
        return body


def default_apps(managed: str, vm: str) -> list[App]:
    return [
        App("m-web", managed, 0, 4, 3),
        App("m-guarded", managed, 2, 4, 3, min_available=2),
        App("m-pinned", managed, 0, 1, 1, pinned=True),
        App("v-web", vm, 0, 4, 2),
        App("v-guarded", vm, 1, 3, 2, min_available=1),
    ]


def ephemeral_nodegroup(**timings: str) -> JsonObj:
    return vm_nodegroup(EPHEMERAL_GROUP, ADVANCED, max_nodes=3, **timings)


class Workload:
    """Seeded churn over :func:`default_apps`; :meth:`step` is one change, :meth:`churn` many."""

    def __init__(
        self,
        e2e: E2E,
        rng: random.Random,
        apps: list[App],
        *,
        ephemeral: bool = False,
        guard: Callable[[str, str, int], None] | None = None,
        group_timings: dict[str, str] | None = None,
    ) -> None:
        self.e2e = e2e
        self.rng = rng
        self.apps = apps
        self.ephemeral = ephemeral
        self.guard = guard
        self.group_timings = group_timings or {}
        self.replicas = {a.name: a.low for a in apps}
        self.log: list[str] = []
        self.steps = 0
        self.ephemeral_state = "absent"  # absent -> present -> deleted (deployment still there) -> absent
        self.ephemeral_cycles = 0
        self.next_ephemeral = 0.0

    def deploy(self) -> None:
        for app in self.apps:
            self.e2e.apply_deployment(app.body(self.replicas[app.name]))
            if app.min_available is not None:
                self.e2e.apply_pdb(
                    pod_disruption_budget(f"{app.name}-pdb", app.name, min_available=app.min_available)
                )
                if self.guard:
                    self.guard(f"{app.name}-pdb", app.name, app.min_available)
        self.next_ephemeral = time.monotonic() + 20.0

    def scale(self, app: App, replicas: int) -> None:
        self.replicas[app.name] = replicas
        self.e2e.scale_deployment(app.name, replicas)

    def step(self) -> str:
        """One change of the workload (and, every ~30-50 s, of the ephemeral NodeGroup)."""
        self.steps += 1
        if self.ephemeral and time.monotonic() >= self.next_ephemeral:
            done = self._ephemeral_step()
            self.next_ephemeral = time.monotonic() + self.rng.uniform(30, 50)
            self.log.append(done)
            return done
        app = self.rng.choice(self.apps)
        replicas = self.rng.randint(app.low, app.high)
        self.scale(app, replicas)
        done = f"{app.name} -> {replicas}"
        self.log.append(done)
        return done

    def _ephemeral_step(self) -> str:
        ns = self.e2e.namespace
        if self.ephemeral_state == "absent":
            self.e2e.client.create(NODEGROUPS, ephemeral_nodegroup(**self.group_timings))
            self.e2e.apply_deployment(
                App(EPHEMERAL_APP, EPHEMERAL_GROUP, 2, 2, 0).body(self.rng.randint(1, 3))
            )
            self.ephemeral_state = "present"
            return f"NodeGroup {EPHEMERAL_GROUP} created with {EPHEMERAL_APP}"
        if self.ephemeral_state == "present":
            self.e2e.client.delete(f"{NODEGROUPS}/{EPHEMERAL_GROUP}")
            self.ephemeral_state = "deleted"
            self.ephemeral_cycles += 1
            return f"NodeGroup {EPHEMERAL_GROUP} deleted under its pods"
        self._remove_ephemeral_app(ns)
        return f"{EPHEMERAL_APP} removed"

    def _remove_ephemeral_app(self, ns: str) -> None:
        with contextlib.suppress(ApiError):
            self.e2e.client.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/{EPHEMERAL_APP}")
        self.ephemeral_state = "absent"

    def finish(self) -> None:
        """The final workload: every Deployment at its final size, the ephemeral NodeGroup deleted."""
        for app in self.apps:
            self.scale(app, app.final)
        if self.ephemeral_state == "present":
            self.e2e.client.delete(f"{NODEGROUPS}/{EPHEMERAL_GROUP}")
            self.ephemeral_cycles += 1
        if self.ephemeral_state != "absent":
            self._remove_ephemeral_app(self.e2e.namespace)
        self.log.append("final sizes: " + ", ".join(f"{a.name}={a.final}" for a in self.apps))

    def final_pods(self) -> int:
        return sum(a.final for a in self.apps)

    def needed_nodes(self, group: str) -> int:
        return math.ceil(sum(a.final for a in self.apps if a.group == group) / PODS_PER_NODE)
