"""The VPSie simulator as a process: ``vpsie-autoscaler cloudsim --kubeconfig`` and its admin endpoints.

The simulated cloud holds one managed cluster with one VPSie node group per size; its booted
instances become kwok Nodes through the bridge. Callers read and steer it through ``/_sim/state``,
``/_sim/requests`` and ``/_sim/faults``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from hack.stack.kube import JsonObj
from hack.stack.processes import POLL_S, Process, WaitTimeout, cli, http_json
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER, SimConfig

SIM_CLUSTER_NAME: Final = "HEL-Kubernetes-e2e1"
SIM_CLUSTER_ID: Final = DEFAULT_CLUSTER


@dataclass(frozen=True)
class VPSieGroup:
    """A VPSie node group of the simulated managed cluster (VPSie allows one group per size)."""

    name: str
    size_id: int  # plan id: 56 Standard 2 cpu/4 GiB $20, 57 Advanced 4/8 $40, 61 HighMem 4/32 $90
    cpu: int
    memory_mib: int
    monthly_price: float


STANDARD: Final = VPSieGroup("GRP-Standard-e2e", 56, 2, 4096, 20.0)
ADVANCED: Final = VPSieGroup("GRP-Advanced-e2e", 57, 4, 8192, 40.0)
HIGHMEM: Final = VPSieGroup("GRP-HighMem-e2e", 61, 4, 32768, 90.0)
SIM_GROUPS: Final = (STANDARD, ADVANCED, HIGHMEM)
SIM_START_S: Final = 30.0
BOOT_DELAY_S: Final = 1.0  # cloud create → running instance → Node
PENDING_DELAY_S: Final = 0.2
DELETE_DELAY_S: Final = 0.5
SIM_CLIENT_ID: Final = "e2e-client"
SIM_CLIENT_SECRET: Final = "e2e-secret"


def sim_config(groups: Iterable[VPSieGroup] = SIM_GROUPS) -> JsonObj:
    """The simulator's YAML config: one managed cluster with one VPSie node group per size, no nodes."""
    return {
        "client_id": SIM_CLIENT_ID,
        "client_secret": SIM_CLIENT_SECRET,
        "delays": {
            "pending_seconds": PENDING_DELAY_S,
            "boot_seconds": BOOT_DELAY_S,
            "delete_seconds": DELETE_DELAY_S,
        },
        "clusters": [
            {
                "name": SIM_CLUSTER_NAME,
                "identifier": SIM_CLUSTER_ID,
                "groups": [{"name": g.name, "size": g.size_id, "nodes": 0} for g in groups],
            }
        ],
    }


class CloudSim:
    """``vpsie-autoscaler cloudsim`` with the Kubernetes bridge, and its admin endpoints."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        *,
        boot_delay: float = BOOT_DELAY_S,
        groups: Iterable[VPSieGroup] = SIM_GROUPS,
        seed: int = 7,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "cloudsim.yaml"
        self.ready_file = workdir / "cloudsim-ready.json"
        self.config_path.write_text(yaml.safe_dump(sim_config(groups)))
        argv = cli(
            "cloudsim",
            "--port",
            "0",
            "--config",
            str(self.config_path),
            "--kubeconfig",
            str(kubeconfig),
            "--boot-delay",
            str(boot_delay),
            "--ready-file",
            str(self.ready_file),
            "--seed",
            str(seed),
        )
        self.process = Process("cloudsim", argv, workdir / "cloudsim.log")
        self.base_url = ""

    def start(self) -> CloudSim:
        self.ready_file.unlink(missing_ok=True)
        self.process.start()
        deadline = time.monotonic() + SIM_START_S
        while not (self.ready_file.exists() and self.ready_file.stat().st_size):
            self.process.check_alive()
            if time.monotonic() > deadline:
                raise WaitTimeout(f"cloudsim not listening after {SIM_START_S}s:\n{self.process.tail()}")
            time.sleep(POLL_S / 4)
        self.base_url = json.loads(self.ready_file.read_text())["base_url"]
        return self

    def stop(self) -> None:
        self.process.stop()

    # --- admin endpoints ---------------------------------------------------------------------------
    def state(self) -> JsonObj:
        state: JsonObj = http_json("GET", f"{self.base_url}/_sim/state")
        return state

    def requests(self) -> list[JsonObj]:
        rows: list[JsonObj] = http_json("GET", f"{self.base_url}/_sim/requests")
        return rows

    def add_node_requests(self, group: VPSieGroup | None = None) -> list[JsonObj]:
        """``add/slave`` calls the simulator served (any status), optionally for one VPSie group."""
        suffix = f"/add/slave/group/{self.group_id(group)}" if group else "/add/slave/group/"
        return [r for r in self.requests() if r["method"] == "POST" and suffix in r["path"]]

    def add_fault(self, **spec: Any) -> int:
        fault: JsonObj = http_json("POST", f"{self.base_url}/_sim/faults", spec)
        return int(fault["id"])

    def clear_faults(self) -> None:
        http_json("DELETE", f"{self.base_url}/_sim/faults")

    def _cluster(self) -> JsonObj:
        clusters: list[JsonObj] = self.state()["clusters"]
        [cluster] = [c for c in clusters if c["identifier"] == SIM_CLUSTER_ID]
        return cluster

    def group_id(self, group: VPSieGroup) -> int:
        [found] = [g for g in self._cluster()["groups"] if g["group_name"] == group.name]
        return int(found["id"])

    def workers(self, group: VPSieGroup | None = None, *, include_deleting: bool = False) -> list[JsonObj]:
        """Worker instances in the cloud (what is billed), optionally of one VPSie group."""
        cluster = self._cluster()
        gid = None if group is None else self.group_id(group)
        return [
            n
            for n in cluster["nodes"]
            if n["group_id"] is not None
            and (gid is None or n["group_id"] == gid)
            and (include_deleting or n["phase"] != "deleting")
        ]


def add_node_path(group_id: int) -> str:
    return f"/apps/v2/k8s/cluster/byId/{SIM_CLUSTER_ID}/add/slave/group/{group_id}"


# VM NodeGroups (plain VPSie VMs, the simulator's default catalogue), the create/delete calls per source
# in the simulator's request log, fault hit counters, and a Kubernetes watch to act the moment an
# object appears.
VM_CREATE_PATHS: Final = frozenset({"/apps/v2/vm", "/api/v2/vm"})
MANAGED_DELETE_SUFFIX: Final = "/delete/slave"


def plan_identifier(group: VPSieGroup) -> str:
    """The VPSie plan identifier (a VM's ``resourceIdentifier``) of the size of ``group``."""
    [plan] = [p for p in SimConfig().plans if p.id == group.size_id]
    return plan.identifier


def sim_vms(sim: CloudSim, prefix: str = "", *, include_deleting: bool = False) -> list[JsonObj]:
    """VMs in the cloud whose hostname starts with ``prefix`` (``pending`` ones too: they are billed)."""
    return [
        v
        for v in sim.state()["vms"]
        if v["hostname"].startswith(prefix) and (include_deleting or v["phase"] != "deleting")
    ]


def vm_create_requests(sim: CloudSim) -> list[JsonObj]:
    """VM create calls the simulator served (any status)."""
    return [r for r in sim.requests() if r["method"] == "POST" and r["path"] in VM_CREATE_PATHS]


def delete_requests(sim: CloudSim, *, vm: bool = False) -> list[JsonObj]:
    """Targeted deletes the simulator served (any status): managed node deletes, or VM deletes."""
    return [
        r
        for r in sim.requests()
        if r["method"] == "DELETE"
        and (r["path"] in VM_CREATE_PATHS if vm else r["path"].endswith(MANAGED_DELETE_SUFFIX))
    ]


def sim_faults(sim: CloudSim) -> list[JsonObj]:
    """The simulator's faults with their ``hits``: a hit is counted when a request *arrives*, whereas
    ``/_sim/requests`` lists a request only once it has been answered (after any latency)."""
    faults: list[JsonObj] = http_json("GET", f"{sim.base_url}/_sim/faults")
    return faults


def fault_hits(sim: CloudSim, fault_id: int) -> int:
    return next((int(f["hits"]) for f in sim_faults(sim) if f["id"] == fault_id), 0)
