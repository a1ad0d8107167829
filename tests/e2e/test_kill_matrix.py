"""SIGKILL at each step of a launch and of a termination, with a standby taking over.

Two ``vpsie-autoscaler run`` replicas share the Lease; the leader is SIGKILLed at one step of the
lifecycle of a VPSieNode, the standby takes the Lease, the killed replica comes back as the new
standby, and the workload settles. Then, whatever the step:

- every VPSie instance of the group answers exactly one live VPSieNode (``status.launch.boundHostname``,
  and its ``status.nodeName``), and no VPSieNode is bound to two instances;
- no second create was sent for one record: the create calls in the simulator's request log (managed
  add-node, or VM create) equal the records that launched;
- the group has the nodes the workload needs, and every pod runs.

Launch steps (managed NodeGroup and VM NodeGroup), for the first VPSieNode of a scale-up:

a. the VPSieNode has just been created: a watch sees it and the leader is killed at once, before the
   launch record is written (usually before the finalizer too);
b. the launch record is written and the create call is in flight (a ``latency`` fault holds it in the
   simulator; the kill comes when the fault counts the request's arrival);
c. the create was carried out but its answer lost (``reply_lost``): killed as the loss is logged;
d. the instance is bound (``status.launch.boundHostname`` set).

Termination steps (managed NodeGroup; ``maxNodes`` lowered from 2 to 1 under two busy nodes):

e. during the drain, pods still on the node (a PodDisruptionBudget holds them; removed after the
   hand-over so that the standby finishes the drain);
f. the targeted delete in flight (``latency`` fault on ``*/delete/slave``);
g. the delete answered, the VPSieNode's finalizer still there.

Each test prints how long the standby took to lead after the kill (the Lease hand-over) and how long
the group took to settle; ``pytest -s`` shows them, and a summary at the end of the module.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.harness import (
    ADVANCED,
    E2E,
    NODEGROUPS,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
    VPSIENODES,
    Autoscaler,
    JsonObj,
    add_node_path,
    collection_version,
    delete_requests,
    deployment,
    fault_hits,
    http_json,
    is_running,
    nodegroup,
    one_to_one,
    phase_of,
    plan_identifier,
    pod_disruption_budget,
    sim_vms,
    vm_create_requests,
    vm_nodegroup,
    wait_until,
    watch,
)
from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION, INSTANCE_FINALIZER, NODEGROUP_LABEL
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT
from vpsie_autoscaler.controllers.cloud import vm_hostname_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S = 90.0
SETTLE_S = 90.0
FILL_ADVANCED = "3"  # cpu: one such pod per Advanced (4 cpu) node
HALF_ADVANCED = "1500m"  # two such pods share an Advanced node
FAULT_SECONDS = 3.0
DRAIN_GRACE = "60s"  # longer than the test: the held drain is never given up

RESULTS: list[str] = []


# --- the two kinds of NodeGroup ----------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    name: str
    vm: bool

    def nodegroup(self, name: str, **options: Any) -> JsonObj:
        return vm_nodegroup(name, ADVANCED, **options) if self.vm else nodegroup(name, ADVANCED, **options)

    def instances(self, e2e: E2E, group: str, *, include_deleting: bool = False) -> list[JsonObj]:
        """The group's instances in the cloud, billed ones (a VM still pending included)."""
        if self.vm:
            return sim_vms(e2e.sim, vm_hostname_prefix(group), include_deleting=include_deleting)
        return e2e.sim.workers(ADVANCED, include_deleting=include_deleting)

    def create_calls(self, e2e: E2E) -> int:
        return len(vm_create_requests(e2e.sim) if self.vm else e2e.sim.add_node_requests(ADVANCED))

    @property
    def in_flight_fault(self) -> str:
        """The fault that holds a create in flight: ``latency`` holds the request before VPSie acts on it.
        The simulator reads a request's body only after the latency, so a VM create (which has a
        body) whose client dies meanwhile is lost (``test_simulator_carries_out_a_held_vm_create``);
        for VMs ``late_reply`` holds the answer of a create VPSie has received and carried out."""
        return "late_reply" if self.vm else "latency"

    def create_fault(self, e2e: E2E, **spec: Any) -> int:
        """A fault on this kind's create call (VM create, or add-node of the group)."""
        path = "*/vm" if self.vm else add_node_path(e2e.sim.group_id(ADVANCED))
        return e2e.sim.add_fault(method="POST", path=path, **spec)


MANAGED = Kind("managed", vm=False)
VM = Kind("vm", vm=True)


# --- helpers -----------------------------------------------------------------------------------------
def launch_of(vn: JsonObj) -> JsonObj:
    launch: JsonObj = (vn.get("status") or {}).get("launch") or {}
    return launch


def bound_hostname(vn: JsonObj) -> str | None:
    host = launch_of(vn).get("boundHostname")
    return str(host).lower() if host else None


def describe(vn: JsonObj | None) -> str:
    """Where a VPSieNode's lifecycle stands, in the terms of the matrix."""
    if vn is None:
        return "gone"
    meta = vn["metadata"]
    parts = [f"{meta['name']} phase={phase_of(vn)}"]
    if INSTANCE_FINALIZER not in (meta.get("finalizers") or []):
        parts.append("no finalizer")
    launch = launch_of(vn)
    if not launch:
        parts.append("no launch record")
    elif bound_hostname(vn):
        parts.append(f"bound to {launch['boundHostname']}")
    else:
        parts.append(f"launch record (outcome={launch.get('outcome')}), unbound")
    if meta.get("deletionTimestamp"):
        parts.append("deleting")
    return ", ".join(parts)


def replicas(e2e: E2E) -> tuple[Autoscaler, Autoscaler]:
    leader = e2e.autoscaler("replica-a")
    standby = e2e.autoscaler("replica-b", wait_leader=False)
    assert not standby.is_leader()
    return leader, standby


def hand_over(e2e: E2E, leader: Autoscaler, standby: Autoscaler, killed_at: float) -> float:
    """After the leader's SIGKILL: the standby leads; the killed replica comes back as the standby.
    Returns the seconds from the kill until the standby led (the Lease hand-over)."""
    wait_until(
        standby.is_leader,
        bool,
        timeout=30.0,
        what=f"{standby.name} to take the Lease",
        alive=[e2e.sim.process, standby.proc],
        interval=0.1,
    )
    took = time.monotonic() - killed_at
    leader.start()  # readiness is checked at the end; the test goes on meanwhile
    return took


def spread_deployment(name: str, replicas_: int, *, cpu: str) -> JsonObj:
    """Pods that prefer separate nodes but may share one."""
    body = deployment(name, replicas_, cpu=cpu, memory="1Gi")
    body["spec"]["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": name}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    return body


def settle_and_check(
    e2e: E2E,
    kind: Kind,
    group: str,
    *,
    nodes: int,
    creates: int,
    app: str,
    pods: int,
) -> None:
    """Wait until the group settles, then check the one-to-one invariants."""
    e2e.wait_pods_running(app, pods, timeout=SETTLE_S)

    def settled(seen: tuple[list[str], list[JsonObj]]) -> bool:
        instances, records = seen
        live = [v for v in records if not v["metadata"].get("deletionTimestamp") and phase_of(v) != "Failed"]
        return (
            len(instances) == nodes
            and len(live) == nodes
            and all(v in live or (phase_of(v) == "Failed" and not bound_hostname(v)) for v in records)
        )

    e2e.wait(
        lambda: (
            [i["hostname"] for i in kind.instances(e2e, group, include_deleting=True)],
            e2e.vpsienodes(group),
        ),
        settled,
        timeout=SETTLE_S,
        what=f"{nodes} instance(s) and {nodes} live VPSieNode(s), none deleting",
    )
    one_to_one(e2e, group)
    assert_one_record_per_instance(e2e, kind, group)
    assert kind.create_calls(e2e) == creates, (
        f"{kind.create_calls(e2e)} create calls for {creates} launched record(s): a record was launched twice"
    )
    assert len(e2e.running_pods(app)) == pods
    assert all(is_running(p) for p in e2e.pods(app))


def assert_one_record_per_instance(e2e: E2E, kind: Kind, group: str) -> None:
    instances = kind.instances(e2e, group)
    records = e2e.vpsienodes(group)
    live = e2e.live_vpsienodes(group)
    hosts = Counter(i["hostname"].lower() for i in instances)
    assert all(n == 1 for n in hosts.values()), f"two instances with one hostname: {hosts}"
    claims = Counter(h for h in map(bound_hostname, records) if h)
    assert all(n == 1 for n in claims.values()), f"an instance bound by two VPSieNodes: {claims}"
    for host in hosts:
        owners = [v["metadata"]["name"] for v in live if bound_hostname(v) == host]
        assert len(owners) == 1, f"instance {host} answers {owners}, not exactly one live VPSieNode"
    for vn in live:
        host = bound_hostname(vn)
        assert host in hosts, f"{describe(vn)}: bound to no instance of the cloud"
        assert (vn["status"].get("nodeName") or "").lower() == host, f"{describe(vn)}: nodeName differs"
    for vn in records:
        if phase_of(vn) == "Failed":  # a launch never answered fails by time: it must own nothing
            assert not bound_hostname(vn), f"a Failed record keeps an instance: {describe(vn)}"


def report(kind: Kind, step: str, *, at_kill: str, handover: float, settled: float, extra: str = "") -> None:
    line = (
        f"{kind.name:7} {step:22} handover {handover:4.1f}s  settled {settled:5.1f}s after the kill  "
        f"state at kill: {at_kill}{'; ' + extra if extra else ''}"
    )
    RESULTS.append(line)
    print(f"\n[kill-matrix] {line}")


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    if RESULTS:
        print("\n[kill-matrix] summary (lease: 4 s duration, 3 s renew deadline, 0.5 s retry):")
        for line in RESULTS:
            print(f"[kill-matrix]   {line}")


class KillOnSight(threading.Thread):
    """Watches the group's VPSieNodes and SIGKILLs ``victim`` the moment the first one is ADDED."""

    def __init__(self, e2e: E2E, group: str, victim: Autoscaler) -> None:
        super().__init__(daemon=True)
        self.client = e2e.client
        self.group = group
        self.victim = victim
        self.version = collection_version(e2e.client, VPSIENODES)
        self.killed_at: float | None = None
        self.name_seen: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            events = watch(
                self.client,
                VPSIENODES,
                label_selector=f"{NODEGROUP_LABEL}={self.group}",
                resource_version=self.version,
                timeout=SCALE_UP_S,
            )
            with contextlib.closing(events):
                for kind, obj in events:
                    if kind == "ADDED":
                        self.victim.kill9()
                        self.killed_at = time.monotonic()
                        self.name_seen = obj["metadata"]["name"]
                        return
        except BaseException as exc:  # handed to the test thread
            self.error = exc


# --- launch ------------------------------------------------------------------------------------------
LAUNCH_STEPS = ("a-created", "b-create-in-flight", "c-answer-lost", "d-bound")
# One pod for a: the kill comes at the first record's creation, and a second record of the burst could
# be caught between its launch record and its create call (see _kill_at_launch_step).
LAUNCH_PODS = {"a-created": 1, "b-create-in-flight": 2, "c-answer-lost": 2, "d-bound": 2}


def _kill_at_launch_step(
    e2e: E2E, kind: Kind, group: str, step: str, leader: Autoscaler
) -> tuple[float, str]:
    """Start the workload and SIGKILL the leader at ``step`` of the launch; (kill time, state).

    With two records, b and c hold *every* create of the burst before killing: a kill between one
    record's write-ahead launch record and its create call (a window of milliseconds) is a different
    step, whose record waits maxProvisionTime (at least a minute) before it fails and is replaced.
    """
    pods = LAUNCH_PODS[step]

    def first() -> list[JsonObj]:
        return sorted(e2e.vpsienodes(group), key=lambda v: str(v["metadata"]["creationTimestamp"]))

    alive = [e2e.sim.process, leader.proc]
    if step == "a-created":
        killer = KillOnSight(e2e, group, leader)
        killer.start()
        e2e.apply_deployment(deployment("web", pods, cpu=FILL_ADVANCED, memory="1Gi"))
        wait_until(
            lambda: killer.killed_at is not None or killer.error is not None,
            bool,
            timeout=SCALE_UP_S,
            what="the first VPSieNode",
            interval=0.05,
        )
        if killer.error is not None:
            raise killer.error
        assert killer.killed_at is not None
        vn = e2e.client.get_or_none(f"{VPSIENODES}/{killer.name_seen}")
        assert vn is not None
        assert not launch_of(vn), f"killed too late for step a: {describe(vn)}"
        return killer.killed_at, describe(vn)
    if step == "b-create-in-flight":
        fault = kind.create_fault(e2e, kind=kind.in_flight_fault, seconds=FAULT_SECONDS, times=pods)
        e2e.apply_deployment(deployment("web", pods, cpu=FILL_ADVANCED, memory="1Gi"))
        wait_until(
            lambda: fault_hits(e2e.sim, fault),
            lambda hits: hits >= pods,
            timeout=SCALE_UP_S,
            what=f"{pods} create calls to arrive",
            alive=alive,
            interval=0.05,
        )
        leader.kill9()
        killed_at = time.monotonic()
        answered = kind.create_calls(e2e)
        records = first()
        assert answered == 0, f"a create call was answered before the kill ({answered})"
        assert all(launch_of(v) for v in records), f"a create without a launch record: {records}"
        held = f"{pods} creates in flight ({kind.in_flight_fault} {FAULT_SECONDS:g}s)"
        return killed_at, f"{describe(records[0])}; {held}"
    if step == "c-answer-lost":
        kind.create_fault(e2e, kind="reply_lost", lost_as="504", times=pods)
        e2e.apply_deployment(deployment("web", pods, cpu=FILL_ADVANCED, memory="1Gi"))
        requests = e2e.sim.requests
        wait_until(
            lambda: [r for r in requests() if r.get("lost")],
            lambda lost: len(lost) >= pods,
            timeout=SCALE_UP_S,
            what=f"{pods} lost answers",
            alive=alive,
            interval=0.05,
        )
        leader.kill9()
        killed_at = time.monotonic()
        [vn, *_] = first()
        return killed_at, f"{describe(vn)}; {pods} creates carried out, answers lost (504)"
    assert step == "d-bound"
    e2e.apply_deployment(deployment("web", pods, cpu=FILL_ADVANCED, memory="1Gi"))
    records = wait_until(
        first, lambda vns: any(bound_hostname(v) for v in vns), timeout=SCALE_UP_S, what="a bound record",
        alive=alive, interval=0.05,
    )  # fmt: skip
    leader.kill9()
    killed_at = time.monotonic()
    [vn] = [v for v in records if bound_hostname(v)][:1]
    return killed_at, describe(e2e.client.get_or_none(f"{VPSIENODES}/{vn['metadata']['name']}"))


@pytest.mark.parametrize("step", LAUNCH_STEPS)
@pytest.mark.parametrize("kind", [MANAGED, VM], ids=lambda k: k.name)
def test_sigkill_during_launch_leaves_one_record_per_instance(e2e: E2E, kind: Kind, step: str) -> None:
    group = f"kl-{kind.name}-{step.split('-', maxsplit=1)[0]}"
    e2e.apply_nodegroup(kind.nodegroup(group, max_nodes=4))
    leader, standby = replicas(e2e)

    killed_at, at_kill = _kill_at_launch_step(e2e, kind, group, step, leader)
    handover = hand_over(e2e, leader, standby, killed_at)

    pods = LAUNCH_PODS[step]
    settle_and_check(e2e, kind, group, nodes=pods, creates=pods, app="web", pods=pods)
    settled = time.monotonic() - killed_at
    leader.wait_ready()
    assert standby.is_leader()
    assert not leader.is_leader(), "the restarted replica leads next to the standby that took over"
    report(
        kind,
        f"launch {step}",
        at_kill=at_kill,
        handover=handover,
        settled=settled,
        extra=f"{kind.create_calls(e2e)} create calls",
    )


# --- termination -------------------------------------------------------------------------------------
TERMINATION_STEPS = ("e-draining", "f-delete-in-flight", "f2-delete-answer-held", "g-delete-sent")
# f holds the delete request with ``latency`` (the simulator carries it out even though its client
# died meanwhile); f2 holds the answer of a delete VPSie carried out.
HELD_DELETE = {"f-delete-in-flight": "latency", "f2-delete-answer-held": "late_reply"}


def leaving(e2e: E2E, group: str) -> list[JsonObj]:
    """The group's records on their way out (drain requested, Draining, Deleting)."""
    return [
        v
        for v in e2e.vpsienodes(group)
        if v["metadata"].get("deletionTimestamp")
        or DRAIN_REQUESTED_ANNOTATION in (v["metadata"].get("annotations") or {})
        or phase_of(v) in ("Draining", "Deleting")
    ]


def _kill_at_termination_step(e2e: E2E, group: str, step: str, leader: Autoscaler) -> tuple[float, str]:
    alive = [e2e.sim.process, leader.proc]
    fault = None
    if step in HELD_DELETE:
        fault = e2e.sim.add_fault(
            kind=HELD_DELETE[step], method="DELETE", path="*/delete/slave", seconds=FAULT_SECONDS, times=1
        )
    e2e.client.merge_patch(f"{NODEGROUPS}/{group}", {"spec": {"minNodes": 1, "maxNodes": 1}})
    condition: Callable[[], Any]
    if step == "e-draining":

        def condition() -> Any:
            for vn in leaving(e2e, group):
                if phase_of(vn) not in ("Draining", "Deleting"):
                    continue  # drain requested, not started yet
                node = (vn.get("status") or {}).get("nodeName")
                if node and any(e2e.node_of(p) == node for p in e2e.running_pods("web")):
                    return vn
            return None

    elif step in HELD_DELETE:
        assert fault is not None
        condition = lambda: fault_hits(e2e.sim, fault)  # noqa: E731
    else:
        condition = lambda: delete_requests(e2e.sim)  # noqa: E731
    wait_until(condition, bool, timeout=SETTLE_S, what=f"step {step}", alive=alive, interval=0.05)
    leader.kill9()
    killed_at = time.monotonic()
    [vn] = leaving(e2e, group)
    at_kill = describe(vn)
    if step == "e-draining":
        node = vn["status"]["nodeName"]
        on_node = [p["metadata"]["name"] for p in e2e.running_pods("web") if e2e.node_of(p) == node]
        assert on_node, "the drain had already emptied the node"
        assert phase_of(vn) in ("Draining", "Deleting"), describe(vn)
        at_kill += f"; {len(on_node)} pod(s) still on {node}"
    elif step in HELD_DELETE:
        assert delete_requests(e2e.sim) == [], "the delete was answered before the kill"
        at_kill += f"; delete in flight ({HELD_DELETE[step]} {FAULT_SECONDS:g}s)"
    else:
        assert INSTANCE_FINALIZER in vn["metadata"].get("finalizers", []), (
            "the finalizer went before the kill"
        )
        at_kill += "; delete answered"
    return killed_at, at_kill


@pytest.mark.parametrize("step", TERMINATION_STEPS)
def test_sigkill_during_termination_leaves_one_record_per_instance(e2e: E2E, step: str) -> None:
    kind = MANAGED
    group = f"kt-{kind.name}-{step.split('-', maxsplit=1)[0]}"
    e2e.apply_nodegroup(
        kind.nodegroup(
            group,
            min_nodes=2,
            max_nodes=2,
            unneeded_time="10m",  # only the lowered maxNodes removes a node
            max_graceful_termination=DRAIN_GRACE,
        )
    )
    leader, standby = replicas(e2e)
    e2e.wait(lambda: e2e.live_vpsienodes(group), lambda v: len(v) == 2, timeout=SCALE_UP_S, what="2 records")
    one_to_one(e2e, group, timeout=SCALE_UP_S)
    e2e.apply_deployment(spread_deployment("web", 2, cpu=HALF_ADVANCED))
    pods = e2e.wait_pods_running("web", 2, timeout=SCALE_UP_S)
    assert len({e2e.node_of(p) for p in pods}) == 2, "the two pods share a node"
    creates = kind.create_calls(e2e)
    assert creates == 2
    if step == "e-draining":
        e2e.apply_pdb(pod_disruption_budget("web-pdb", "web", min_available=2))

    killed_at, at_kill = _kill_at_termination_step(e2e, group, step, leader)
    handover = hand_over(e2e, leader, standby, killed_at)
    if step == "e-draining":  # the standby finishes the drain
        e2e.client.delete(f"/apis/policy/v1/namespaces/{e2e.namespace}/poddisruptionbudgets/web-pdb")

    settle_and_check(e2e, kind, group, nodes=1, creates=creates, app="web", pods=2)
    settled = time.monotonic() - killed_at
    leader.wait_ready()
    assert standby.is_leader()
    assert not leader.is_leader()
    deletes = len(delete_requests(e2e.sim))
    report(
        kind,
        f"termination {step}",
        at_kill=at_kill,
        handover=handover,
        settled=settled,
        extra=f"{deletes} delete call(s)",
    )


# --- the simulator's latency fault ---------------------------------------------------------------------
def test_simulator_carries_out_a_held_vm_create_whose_client_died(e2e: E2E) -> None:
    sim = e2e.sim
    login = http_json(
        "POST",
        f"{sim.base_url}/apps/v2/auth/from/api",
        {"clientId": SIM_CLIENT_ID, "clientSecret": SIM_CLIENT_SECRET},
    )
    token = login["token"]["access"]["token"]
    sim.add_fault(kind="latency", method="POST", path="*/vm", seconds=1, times=1)
    body = {
        "resourceIdentifier": plan_identifier(ADVANCED),
        "osIdentifier": DEFAULT_OS,
        "dcIdentifier": DEFAULT_DATACENTER,
        "projectId": DEFAULT_PROJECT,
        "hostname": "km-held-00000",
    }
    request = urllib.request.Request(
        f"{sim.base_url}/apps/v2/vm",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with pytest.raises((TimeoutError, urllib.error.URLError)):  # the client gives up and disconnects
        urllib.request.urlopen(request, timeout=0.3)
    e2e.wait(lambda: sim_vms(sim, "km-held-"), bool, timeout=5.0, what="the held VM create carried out")
