"""Async helpers for the runtime's integration tests against the real control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hack.devcluster.cluster import ClusterHandle
from tests.support.kube_proxy import KubeProxy
from vpsie_autoscaler.kube import KubeClient


@pytest.fixture
async def kube(k8s_cluster: ClusterHandle) -> AsyncIterator[KubeClient]:
    """Our own async client, as the autoscaler builds it, with the admin kubeconfig."""
    async with await KubeClient.connect(str(k8s_cluster.kubeconfig)) as client:
        yield client


@pytest.fixture
async def kube_proxy(k8s_cluster: ClusterHandle) -> AsyncIterator[KubeProxy]:
    proxy = KubeProxy(k8s_cluster.kubeconfig)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def proxied_kube(kube_proxy: KubeProxy) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(server=kube_proxy.url) as client:
        yield client
