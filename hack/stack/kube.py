"""The Kubernetes side of the stack: API paths of the autoscaler's objects, CRD install, watches.

Talks to the local control plane with the synchronous :class:`~hack.devcluster.client.DevKubeClient`.
The CRDs installed are exactly what ``vpsie-autoscaler crds`` prints; installing is idempotent
(create, or replace an older copy), and they stay installed for the life of the cluster.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Generator
from typing import Any, Final

from hack.devcluster.client import ApiError, DevKubeClient, condition_is
from vpsie_autoscaler.api.crdgen import all_crds

JsonObj = dict[str, Any]
API_GROUP: Final = "/apis/autoscaler.vpsie.com/v1alpha1"
NODEGROUPS: Final = f"{API_GROUP}/nodegroups"
VPSIENODES: Final = f"{API_GROUP}/vpsienodes"
NODES: Final = "/api/v1/nodes"
EVENTS_NS: Final = "/apis/events.k8s.io/v1/namespaces/{ns}/events"
CLUSTER_SCOPED_EVENTS_NS: Final = "default"  # where Events about Nodes/NodeGroups live
FINALIZER_PATCH_TYPE: Final = "application/merge-patch+json"
CRD_API: Final = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ESTABLISHED_S: Final = 30.0
STATUS_CONFLICT: Final = 409


def watch(
    client: DevKubeClient,
    path: str,
    *,
    label_selector: str | None = None,
    resource_version: str | None = None,
    timeout: float = 60.0,
) -> Generator[tuple[str, JsonObj], None, None]:
    """``(type, object)`` of each watch event on the collection ``path`` (from ``resource_version``),
    for at most ``timeout`` seconds; the caller stops early by closing the generator."""
    query = {"watch": "1", "timeoutSeconds": str(max(1, int(timeout)))}
    if label_selector:
        query["labelSelector"] = label_selector
    if resource_version:
        query["resourceVersion"] = resource_version
    headers = {"Accept": "application/json"}
    if client._token is not None:
        headers["Authorization"] = f"Bearer {client._token}"
    conn = http.client.HTTPSConnection(client._host, client._port, context=client._ssl, timeout=timeout + 5)
    try:
        conn.request("GET", f"{path}?{urllib.parse.urlencode(query)}", headers=headers)
        resp = conn.getresponse()
        if resp.status >= 400:
            raise ApiError("GET", path, resp.status, resp.read().decode(errors="replace"))
        for line in resp:
            if line.strip():
                event = json.loads(line)
                yield str(event["type"]), event["object"]
    finally:
        conn.close()


def collection_version(client: DevKubeClient, path: str) -> str:
    """The resourceVersion of a list of ``path``: a watch from it sees every later change."""
    return str(client.get(path)["metadata"]["resourceVersion"])


def install_crds(client: DevKubeClient) -> None:
    """Apply every generated CRD and wait until the API server serves it."""
    for crd in all_crds():
        name = crd["metadata"]["name"]
        try:
            client.create(CRD_API, crd)
        except ApiError as err:
            if err.status != STATUS_CONFLICT:
                raise
            current = client.get(f"{CRD_API}/{name}")
            replacement = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            client.request("PUT", f"{CRD_API}/{name}", replacement)
        client.wait_for(
            f"{CRD_API}/{name}",
            lambda c: condition_is(c, "Established", "True"),
            timeout=ESTABLISHED_S,
            what=f"CRD {name} Established",
        )
