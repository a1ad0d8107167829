"""The bridge's Node calls over :class:`~vpsie_autoscaler.kube.KubeClient` (the only kube adapter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from vpsie_autoscaler.cloudsim.bridge import Bridge
from vpsie_autoscaler.cloudsim.state import SimState
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import NODES
from vpsie_autoscaler.runtime.clock import Clock


class KubeNodes:
    """Implements :class:`~vpsie_autoscaler.cloudsim.bridge.NodeAPI`; create and delete are idempotent."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def list_names(self, label_selector: str) -> set[str]:
        body = await self._client.list(NODES, label_selector=label_selector)
        return {item["metadata"]["name"] for item in body.get("items", [])}

    async def create(self, body: dict[str, Any]) -> None:
        with suppress(errors.AlreadyExists):
            await self._client.create(NODES, body)

    async def delete(self, name: str) -> None:
        with suppress(errors.NotFound):
            await self._client.delete(NODES, name)


@asynccontextmanager
async def connect_bridge(state: SimState, kubeconfig: str, clock: Clock) -> AsyncIterator[Bridge]:
    """A bridge writing Nodes into the cluster of ``kubeconfig``; the connection closes on exit."""
    client = await KubeClient.connect(kubeconfig=kubeconfig)
    async with client:
        yield Bridge(state, KubeNodes(client), clock)
