"""Fixtures of the end-to-end suite: a fresh simulated cloud per test, the CRDs, cleanup, failure dumps.

``e2e`` (function scope) starts ``vpsie-autoscaler cloudsim --kubeconfig`` against the session's
``k8s_cluster`` and yields an :class:`~tests.e2e.harness.E2E`; the test starts autoscaler processes
with ``e2e.autoscaler(...)``. Afterwards everything is removed (workloads, NodeGroups, VPSieNodes,
instances, Nodes, processes), so every test starts from an empty cloud and no NodeGroups. When a test
fails, its report gets an "e2e state" section: objects, cloud instances, Events and the log tails of
every process it started (the full logs stay in the test's ``tmp_path``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from functools import partial

import pytest

from hack.devcluster.client import ApiError, DevKubeClient
from hack.devcluster.cluster import ClusterHandle
from tests.e2e.harness import E2E, NODEGROUPS, VPSIENODES, CloudSim
from tests.integration.crds import install_crds

CRD_STORAGE_S = 30.0
STATUS_TOO_MANY_REQUESTS = 429


@pytest.fixture(scope="session")
def e2e_crds(k8s_cluster: ClusterHandle) -> None:
    client = k8s_cluster.client
    install_crds(client)
    # A just-established CRD answers 429 "storage is (re)initializing" for a moment: wait for a list.
    for path in (NODEGROUPS, VPSIENODES):
        client.wait_until(partial(_lists, client, path), bool, timeout=CRD_STORAGE_S, what=f"LIST {path}")


def _lists(client: DevKubeClient, path: str) -> bool:
    try:
        client.list_objects(path)
    except ApiError as err:
        if err.status == STATUS_TOO_MANY_REQUESTS:
            return False
        raise
    return True


@pytest.fixture
def e2e(
    k8s_cluster: ClusterHandle, k8s_namespace: str, e2e_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    workdir = tmp_path_factory.mktemp("e2e")
    sim = CloudSim(workdir, k8s_cluster.kubeconfig).start()
    harness = E2E(k8s_cluster.client, k8s_cluster.kubeconfig, k8s_namespace, workdir, sim)
    try:
        yield harness
    finally:
        harness.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        harness = getattr(item, "funcargs", {}).get("e2e")
        if isinstance(harness, E2E):
            report.sections.append(("e2e state", harness.snapshot()))
