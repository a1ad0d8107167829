"""A controller against the real apiserver: a conflicting status write is requeued, not lost;
stopping drains in-flight work; the manager releases its Lease."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import LEASES, PODS
from vpsie_autoscaler.runtime.controller import Controller, FuncReconciler, Request, Result
from vpsie_autoscaler.runtime.manager import Manager, ManagerOptions

pytestmark = pytest.mark.cluster

CONDITION = "example.vpsie.com/Reconciled"
WAIT_S = 30.0


def pod(name: str) -> dict[str, Any]:
    # Nobody schedules it ("none" scheduler): its status is ours alone, except for the test's writes.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "registry.example/a:1"}]},
    }


def manager_for(kube: KubeClient, ns: str, **kw: Any) -> Manager:
    opts = ManagerOptions(
        namespace=ns,
        identity="test-manager",
        leader_election_id="runtime-test",
        metrics_bind_address="127.0.0.1:0",
        health_probe_bind_address="127.0.0.1:0",
        **kw,
    )
    return Manager(kube, opts)


async def test_a_conflicting_status_write_is_requeued_not_lost(kube: KubeClient, k8s_namespace: str) -> None:
    ns = k8s_namespace
    await kube.create(PODS, pod("p"), ns)
    manager = manager_for(kube, ns)
    informer = manager.informers.informer_for(PODS, namespace=ns)
    attempts = 0

    async def reconcile(req: Request) -> Result:
        nonlocal attempts
        attempts += 1
        cached = informer.store.get(req.name, req.namespace)
        if cached is None:
            return Result()
        if any(c.get("type") == CONDITION for c in (cached.get("status") or {}).get("conditions") or []):
            return Result()
        if attempts == 1:
            # Someone else writes in between: our cached resourceVersion is now stale.
            await kube.merge_patch(
                PODS, req.name, {"metadata": {"labels": {"touched": "yes"}}}, req.namespace
            )
        condition = {"type": CONDITION, "status": "True", "reason": "Done"}
        conditions = [*((cached.get("status") or {}).get("conditions") or []), condition]
        await kube.merge_patch(
            PODS,
            req.name,
            {
                "metadata": {"resourceVersion": cached["metadata"]["resourceVersion"]},
                "status": {"conditions": conditions},
            },
            req.namespace,
            subresource="status",
        )
        return Result()

    controller = Controller("pods", FuncReconciler(reconcile), registry=manager.registry)
    controller.watch(informer)
    manager.add_controller(controller)
    run = asyncio.create_task(manager.run(handle_signals=False))
    try:

        async def reconciled() -> bool:
            status = (await kube.get(PODS, "p", ns)).get("status") or {}
            return any(c.get("type") == CONDITION for c in status.get("conditions") or [])

        await eventually(reconciled, within=WAIT_S, what="status condition written after the conflict")
        final = await kube.get(PODS, "p", ns)
        assert final["metadata"]["labels"] == {"touched": "yes"}, "the other writer's change survived"
        labels = {"controller": "pods"}
        assert (
            manager.registry.get_sample_value("controller_runtime_reconcile_errors_total", labels) or 0
        ) >= 1
        assert attempts >= 2
    finally:
        manager.request_stop()
        await asyncio.wait_for(run, WAIT_S)


async def test_sigterm_drains_in_flight_work_and_releases_the_lease(
    kube: KubeClient, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    await kube.create(PODS, pod("slow"), ns)
    manager = manager_for(kube, ns)
    informer = manager.informers.informer_for(PODS, namespace=ns)
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def reconcile(req: Request) -> Result:
        started.set()
        # Work that is still running when SIGTERM arrives: it must complete its write.
        await proceed.wait()
        await kube.merge_patch(PODS, req.name, {"metadata": {"annotations": {"done": "true"}}}, req.namespace)
        return Result()

    controller = Controller("slow", FuncReconciler(reconcile), registry=manager.registry)
    controller.watch(informer)
    manager.add_controller(controller)
    run = asyncio.create_task(manager.run(handle_signals=True))
    await asyncio.wait_for(started.wait(), WAIT_S)
    os.kill(os.getpid(), signal.SIGTERM)
    await eventually(lambda: controller.queue.shutting_down, what="manager stopping after SIGTERM")
    assert not run.done()
    assert manager.is_leader(), "still leading while reconciles finish"
    proceed.set()
    await asyncio.wait_for(run, WAIT_S)
    annotations = (await kube.get(PODS, "slow", ns))["metadata"].get("annotations") or {}
    assert annotations.get("done") == "true", "the in-flight reconcile finished before the manager stopped"
    lease = await kube.get(LEASES, "runtime-test", ns)
    assert lease["spec"]["holderIdentity"] == ""
    assert lease["spec"]["leaseDurationSeconds"] == 1
    await eventually(lambda: not manager.is_leader())
