"""The simulated VPSie account: catalogue, managed clusters, node groups, nodes, VMs and tokens.

Time-driven transitions are computed lazily from the clock (``tick``) on every request and by the
bridge, so a test on a :class:`~vpsie_autoscaler.runtime.clock.FakeClock` moves instances through their
life by advancing the clock, with no background task. Due times are wall-clock epoch seconds, so a
state file stays meaningful across restarts.

Lifecycles (state words are ours; VPSie's vocabulary is unknown, ``docs/vpsie-api.md`` §7):

- managed node: requested → (``boot_seconds``) running, then visible in ``nodes[]`` and
  ``nodes_count``; deleting → (``delete_seconds``) gone;
- VM: in ``/vm/pending`` for ``pending_seconds`` → listed with ``is_active 0`` ("creating") → after
  ``boot_seconds`` from the request ``is_active 1, power 1`` ("running"); deleting → gone.

An instance created under a ``never_boot`` fault never leaves its first phase. A VM keeps the
``tags`` of its create request; ``GET {VM}/{identifier}`` shows them as ``vmTags``.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vpsie_autoscaler.cloudsim.config import SimConfig, SimPlan, SimTaint
from vpsie_autoscaler.runtime.clock import Clock

USER_ID = 1874  # the simulated account
STATE_FILE_VERSION = 1
MASTER_NODE_TYPE = 1
WORKER_NODE_TYPE = 2
HEX_SUFFIX_BITS = 16  # `<cluster>-slave-<4hex>` as VPSie names workers
TAG_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-4e68-9d7c-8b0a1f2e3d4c")  # tag identifiers derive from names


class SimError(Exception):
    """A VPSie-style failure: HTTP ``status`` (200 for an ``error: true`` envelope) and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tag_identifier(name: str) -> str:
    """A tag's identifier: stable per name, as VPSie keeps one tag record per name (§4.8)."""
    return str(uuid.uuid5(TAG_NAMESPACE, name))


def iso(ts: float) -> str:
    """Epoch seconds as VPSie writes timestamps: ISO-8601 UTC with milliseconds and a Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass
class Cluster:
    id: int
    identifier: str
    name: str
    datacenter: str
    kube_version: str
    created: float


@dataclass
class Group:
    id: int
    identifier: str
    cluster: str  # cluster identifier
    name: str
    size: int  # plan id
    created: float
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Node:
    """A managed-cluster node (a VM internally, as VPSie keeps it)."""

    id: int
    identifier: str
    hostname: str
    cluster: str
    group_id: int | None  # None for masters
    size: int
    ip: str
    private_ip: str
    created: float
    boot_at: float
    never_boots: bool = False
    delete_at: float | None = None

    def running(self, now: float) -> bool:
        return not self.never_boots and now >= self.boot_at


@dataclass
class VM:
    id: int
    identifier: str
    hostname: str
    plan: str  # plan identifier
    os: str
    datacenter: str
    project: str
    process_id: str
    created: float
    listed_at: float
    boot_at: float
    public_ipv4: str = ""
    public_ipv6: str = ""
    private_ip: str = ""
    tags: list[str] = field(default_factory=list)
    user_data: str = ""
    script: str = ""
    notes: str = ""
    power: int = 1
    never_boots: bool = False
    delete_at: float | None = None

    def listed(self, now: float) -> bool:
        return not self.never_boots and now >= self.listed_at

    def active(self, now: float) -> bool:
        return not self.never_boots and now >= self.boot_at


class SimState:
    def __init__(
        self, config: SimConfig, clock: Clock, rng: random.Random, state_file: Path | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng
        self.state_file = state_file
        self.plans_by_id = {p.id: p for p in config.plans}
        self.plans_by_identifier = {p.identifier: p for p in config.plans}
        self.clusters: dict[str, Cluster] = {}
        self.groups: dict[int, Group] = {}
        self.nodes: dict[str, Node] = {}
        self.vms: dict[str, VM] = {}
        self.tokens: dict[str, float] = {}  # issued token → expiry (epoch seconds)
        self.logins = 0
        self._next_id = 1000
        self.version = 0  # bumped on every change the bridge may care about
        if state_file is not None and state_file.exists():
            self._load(state_file)
        else:
            self._seed()

    # --- helpers -------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now().timestamp()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def new_identifier(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _ip(self, prefix: str) -> str:
        return f"{prefix}.{self.rng.randrange(1, 255)}.{self.rng.randrange(1, 255)}"

    def plan(self, size: int) -> SimPlan:
        return self.plans_by_id[size]

    def changed(self) -> None:
        self.version += 1
        self.save()

    # --- seeding and persistence ---------------------------------------------------------------------

    def _seed(self) -> None:
        now = self.now()
        for spec in self.config.clusters:
            cluster = Cluster(
                id=self.new_id(),
                identifier=spec.identifier or self.new_identifier(),
                name=spec.name,
                datacenter=spec.datacenter,
                kube_version=spec.kube_version,
                created=now,
            )
            self.clusters[cluster.identifier] = cluster
            for i in range(spec.masters):
                master_size = spec.groups[0].size if spec.groups else min(self.plans_by_id)
                self._add_node(
                    cluster, None, master_size, now, hostname=f"{spec.name}-master-{i}.k8s.vpsie.net"
                )
            for g in spec.groups:
                if g.size not in self.plans_by_id:
                    raise ValueError(f"group {g.name}: size {g.size} is not a plan id of the catalogue")
                group = Group(
                    id=self.new_id(),
                    identifier=self.new_identifier(),
                    cluster=cluster.identifier,
                    name=g.name,
                    size=g.size,
                    created=now,
                    labels=dict(g.labels),
                    taints=[t.model_dump() for t in g.taints],
                )
                self.groups[group.id] = group
                for _ in range(g.nodes):
                    self._add_node(cluster, group.id, g.size, now)

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_FILE_VERSION,
            "next_id": self._next_id,
            "clusters": [asdict(c) for c in self.clusters.values()],
            "groups": [asdict(g) for g in self.groups.values()],
            "nodes": [asdict(n) for n in self.nodes.values()],
            "vms": [asdict(v) for v in self.vms.values()],
        }

    def save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1))
        os.replace(tmp, self.state_file)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != STATE_FILE_VERSION:
                raise ValueError(f"unsupported state file version {raw.get('version')!r}")
            self._next_id = int(raw["next_id"])
            self.clusters = {c["identifier"]: Cluster(**c) for c in raw["clusters"]}
            self.groups = {g["id"]: Group(**g) for g in raw["groups"]}
            self.nodes = {n["identifier"]: Node(**n) for n in raw["nodes"]}
            self.vms = {v["identifier"]: VM(**v) for v in raw["vms"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot load simulator state file {path}: {exc}") from None

    # --- time ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply every transition that is due (deletions; boots need no action, they are computed)."""
        now = self.now()
        gone = [k for k, n in self.nodes.items() if n.delete_at is not None and now >= n.delete_at]
        gone_vms = [k for k, v in self.vms.items() if v.delete_at is not None and now >= v.delete_at]
        for key in gone:
            del self.nodes[key]
        for key in gone_vms:
            del self.vms[key]
        if gone or gone_vms:
            self.changed()

    # --- auth ----------------------------------------------------------------------------------------

    def token_value(self) -> str:
        return f"sim.{self.rng.getrandbits(128):032x}"

    def issue_token(self) -> tuple[str, float]:
        token = self.token_value()
        expires = self.now() + self.config.token_ttl_seconds
        self.tokens[token] = expires
        self.logins += 1
        return token, expires

    def token_valid(self, token: str) -> bool:
        if token in self.config.api_tokens:
            return True
        expires = self.tokens.get(token)
        return expires is not None and self.now() < expires

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    # --- managed Kubernetes --------------------------------------------------------------------------

    def cluster(self, identifier: str) -> Cluster:
        cluster = self.clusters.get(identifier)
        if cluster is None:
            raise SimError(404, "Cluster not found")
        return cluster

    def cluster_nodes(self, cluster: Cluster, *, visible_only: bool = True) -> list[Node]:
        now = self.now()
        nodes = [n for n in self.nodes.values() if n.cluster == cluster.identifier]
        if visible_only:
            nodes = [n for n in nodes if n.running(now)]
        return sorted(nodes, key=lambda n: n.id)

    def group_nodes(self, group: Group) -> list[Node]:
        now = self.now()
        return [
            n
            for n in self.nodes.values()
            if n.group_id == group.id and n.running(now) and n.delete_at is None
        ]

    def cluster_groups(self, cluster: Cluster) -> list[Group]:
        return sorted(
            (g for g in self.groups.values() if g.cluster == cluster.identifier), key=lambda g: g.id
        )

    def _add_node(
        self,
        cluster: Cluster,
        group_id: int | None,
        size: int,
        boot_at: float,
        *,
        hostname: str | None = None,
        never_boots: bool = False,
    ) -> Node:
        suffix = f"{self.rng.getrandbits(HEX_SUFFIX_BITS):04x}"
        node = Node(
            id=self.new_id(),
            identifier=self.new_identifier(),
            hostname=hostname or f"{cluster.name}-slave-{suffix}",
            cluster=cluster.identifier,
            group_id=group_id,
            size=size,
            ip=self._ip("185.112"),
            private_ip=self._ip("10.20"),
            created=self.now(),
            boot_at=boot_at,
            never_boots=never_boots,
        )
        self.nodes[node.identifier] = node
        return node

    def create_group(self, cluster_identifier: str, name: str, size: int) -> Group:
        cluster = self.cluster(cluster_identifier)
        if size not in self.plans_by_id:
            raise SimError(400, "Invalid KubeSizeID")
        for group in self.cluster_groups(cluster):
            if group.size == size:
                raise SimError(200, f"Group {group.name} has same selected Size, please select another size")
            if group.name == name:
                raise SimError(200, f"Group name {name} already exists")
        group = Group(
            id=self.new_id(),
            identifier=self.new_identifier(),
            cluster=cluster.identifier,
            name=name,
            size=size,
            created=self.now(),
        )
        self.groups[group.id] = group
        self.changed()
        return group

    def delete_group(self, identifier: str) -> None:
        group = next((g for g in self.groups.values() if g.identifier == identifier), None)
        if group is None:
            raise SimError(404, "Group not found")
        for node in [n for n in self.nodes.values() if n.group_id == group.id]:
            del self.nodes[node.identifier]
        del self.groups[group.id]
        self.changed()

    def add_node(self, cluster_identifier: str, group_id: int, *, never_boots: bool = False) -> Node:
        cluster = self.cluster(cluster_identifier)
        group = self.groups.get(group_id)
        if group is None or group.cluster != cluster.identifier:
            raise SimError(404, "Group not found")
        limit = self.config.max_workers_per_cluster
        workers = [n for n in self.cluster_nodes(cluster, visible_only=False) if n.group_id is not None]
        if limit is not None and len([n for n in workers if n.delete_at is None]) >= limit:
            raise SimError(200, "Worker nodes count exceeds the allowed limit")
        node = self._add_node(
            cluster,
            group.id,
            group.size,
            self.now() + self.config.delays.boot_seconds,
            never_boots=never_boots,
        )
        self.changed()
        return node

    def delete_node(self, cluster_identifier: str, node_identifier: str) -> None:
        cluster = self.cluster(cluster_identifier)
        node = self.nodes.get(node_identifier)
        if node is None or node.cluster != cluster.identifier or node.group_id is None:
            raise SimError(404, "Node not found")
        self._schedule_delete(node)

    def reduce_group(self, cluster_identifier: str, group_id: int) -> Node:
        self.cluster(cluster_identifier)
        group = self.groups.get(group_id)
        if group is None or group.cluster != cluster_identifier:
            raise SimError(404, "Group not found")
        nodes = sorted(self.group_nodes(group), key=lambda n: n.id)
        if not nodes:
            raise SimError(200, "No worker node left to remove in this group")
        victim = nodes[-1]  # VPSie picks; the simulator removes the newest
        self._schedule_delete(victim)
        return victim

    def _schedule_delete(self, node: Node) -> None:
        if node.delete_at is None:
            node.delete_at = self.now() + self.config.delays.delete_seconds
            self.changed()

    # --- VMs -----------------------------------------------------------------------------------------

    def create_vm(self, body: dict[str, Any], *, never_boots: bool = False) -> VM:
        for required in ("resourceIdentifier", "osIdentifier", "dcIdentifier", "hostname", "projectId"):
            if not body.get(required) and body.get(required) != 0:
                raise SimError(400, f'"{required}" is required')
        if not isinstance(body["projectId"], str):
            raise SimError(400, '"projectId" must be a string')
        plan = self.plans_by_identifier.get(str(body["resourceIdentifier"]))
        if plan is None:
            raise SimError(400, "Invalid resourceIdentifier")
        if body["dcIdentifier"] not in {d.identifier for d in self.config.datacenters}:
            raise SimError(400, "Invalid dcIdentifier")
        if body["osIdentifier"] not in {o.identifier for o in self.config.os_images}:
            raise SimError(400, "Invalid osIdentifier")
        if body["projectId"] not in {p.identifier for p in self.config.projects}:
            raise SimError(400, "Invalid projectId")

        def flag(name: str) -> bool:
            return body.get(name) == "1"  # numbers are silently ignored, as VPSie does (§4.5)

        now = self.now()
        delays = self.config.delays
        vm = VM(
            id=self.new_id(),
            identifier=self.new_identifier(),
            hostname=str(body["hostname"]),
            plan=plan.identifier,
            os=str(body["osIdentifier"]),
            datacenter=str(body["dcIdentifier"]),
            project=str(body["projectId"]),
            process_id=str(body.get("processId") or ""),
            created=now,
            listed_at=now + delays.pending_seconds,
            boot_at=now + max(delays.boot_seconds, delays.pending_seconds),
            public_ipv4=self._ip("185.112") if flag("addPublicIpV4") else "",
            public_ipv6=f"2a0a:4cc0::{self.rng.getrandbits(16):x}" if flag("addPublicIpV6") else "",
            private_ip=self._ip("10.20") if flag("addPrivateIp") else "",
            tags=[str(t) for t in body.get("tags") or []],
            user_data=str(body.get("userData") or ""),
            script=str(body.get("scriptIdentifier") or ""),
            notes=str(body.get("notes") or ""),
            never_boots=never_boots,
        )
        self.vms[vm.identifier] = vm
        self.changed()
        return vm

    def vm(self, identifier: str) -> VM:
        vm = self.vms.get(identifier)
        if vm is None or not vm.listed(self.now()):
            raise SimError(404, "VM not found")
        return vm

    def delete_vm(self, body: dict[str, Any]) -> None:
        statistic = body.get("deleteStatistic")
        if not isinstance(statistic, dict):
            # VPSie answers 500 here (TF-B changelog); the text mimics a Node.js TypeError.
            raise SimError(500, "Cannot read properties of undefined (reading 'reason')")
        vm = self.vm(str(body.get("vmIdentifier") or ""))
        password = self.config.account_password
        if password is not None and body.get("password") != password:
            raise SimError(400, "Invalid password")
        if vm.delete_at is None:
            vm.delete_at = self.now() + self.config.delays.delete_seconds
            self.changed()

    def power(self, identifier: str, on: bool) -> None:
        vm = self.vm(identifier)
        vm.power = 1 if on else 0
        self.changed()

    def pending_vms(self) -> list[VM]:
        now = self.now()
        return [v for v in self.vms.values() if not v.listed(now)]

    def listed_vms(self) -> list[VM]:
        now = self.now()
        return sorted((v for v in self.vms.values() if v.listed(now)), key=lambda v: v.id)

    def set_group_template(self, group_id: int, labels: dict[str, str], taints: list[SimTaint]) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            raise SimError(404, "Group not found")
        group.labels = dict(labels)
        group.taints = [t.model_dump() for t in taints]
        self.changed()
        return group
