"""Shared fixtures: a real local Kubernetes control plane for integration and end-to-end tests.

``k8s_cluster`` (session): one cluster per pytest run, started from the tools ``make
devcluster-build`` produced (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok,
helm). It yields a ``ClusterHandle`` (``hack/devcluster/cluster.py``):

* ``kubeconfig`` admin kubeconfig path; ``api_url``; ``bin_dir`` (``tool("helm")``, ``tool("kwok")``);
* ``client``: a synchronous ``DevKubeClient`` (admin) with ``wait_for``/``wait_gone`` that fail fast,
  with the component's log tail, if a control-plane process dies;
* ``sa_kubeconfig(namespace, sa_name)``: kubeconfig carrying a TokenRequest token for that
  ServiceAccount, so code under test runs with exactly the RBAC it is granted.

If the tools are not built the fixture skips, except with ``REQUIRE_DEVCLUSTER=1`` (``make test``,
CI), where a missing cluster is a failure. ``DEVCLUSTER_KUBECONFIG=.devcluster/kubeconfig`` reuses a
cluster started by ``make devcluster`` instead of starting one (fast local iteration).

``k8s_namespace`` (function): a fresh namespace whose ``default`` ServiceAccount exists; deleted
after the test together with every Node labelled ``devcluster.test/owner=<namespace>``
(``hack.devcluster.nodes.OWNER_LABEL``), so tests label the kwok Nodes they create with it.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pytest

from hack.devcluster.client import suppress_not_found
from hack.devcluster.cluster import ClusterHandle, DevCluster, find_binaries
from hack.devcluster.nodes import OWNER_LABEL

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
REQUIRE_ENV = "REQUIRE_DEVCLUSTER"
REUSE_ENV = "DEVCLUSTER_KUBECONFIG"
NAMESPACE_PREFIX = "t-"
_NAME_BUDGET = 40  # leaves room for the prefix and a random suffix within 63 characters
NAMESPACE_READY_S = 30.0


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing cluster is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    workdir = tmp_path_factory.mktemp("devcluster")
    reuse = os.environ.get(REUSE_ENV)
    problem = None
    try:
        bin_dir = find_binaries()
    except FileNotFoundError as err:  # $DEVCLUSTER_BIN_DIR points at an incomplete directory
        bin_dir, problem = None, str(err)
    if problem:
        _unavailable(problem)
    if reuse:
        kubeconfig = Path(reuse).resolve()
        yield ClusterHandle.attach(kubeconfig, bin_dir or kubeconfig.parent / "bin", workdir)
        return
    if bin_dir is None:
        _unavailable("local control plane binaries are not built; run `make devcluster-build`")
    cluster = DevCluster(bin_dir, workdir)
    previous = _stop_on_sigterm(cluster)
    handle = cluster.start()
    try:
        yield handle
    finally:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _stop_on_sigterm(cluster: DevCluster) -> SignalHandler:
    """A CI runner that times out sends SIGTERM, which skips ``atexit``: stop the cluster, then die as asked.

    The components run in their own sessions, so without this they would outlive a killed pytest.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    return previous


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:_NAME_BUDGET].strip("-")
    return f"{NAMESPACE_PREFIX}{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def k8s_namespace(k8s_cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    client = k8s_cluster.client
    name = _namespace_name(request.node.name)
    client.create_namespace(name, labels={"devcluster.test/namespace": "true"})
    # Pods are rejected until the ServiceAccount admission plugin finds the "default" SA.
    client.wait_for(
        f"/api/v1/namespaces/{name}/serviceaccounts/default",
        lambda sa: sa is not None,
        timeout=NAMESPACE_READY_S,
        what=f"ServiceAccount {name}/default",
    )
    try:
        yield name
    finally:
        client.delete_nodes(f"{OWNER_LABEL}={name}")
        with suppress_not_found():
            client.delete_namespace(name)
