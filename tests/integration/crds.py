"""Install the generated CRDs into a test cluster (shared by integration and end-to-end tests).

The CRDs installed are exactly what ``vpsie-autoscaler crds`` prints. Installing is idempotent
(create, or replace an older copy), so any test module may call :func:`install_crds`; they stay
installed for the rest of the session (the cluster is per session).
"""

from __future__ import annotations

from hack.devcluster.client import ApiError, KubeClient, condition_is
from vpsie_autoscaler.api.crdgen import all_crds

CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ESTABLISHED_S = 30.0
STATUS_CONFLICT = 409


def install_crds(client: KubeClient) -> None:
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
