"""``make demo`` cannot silently rot: its core runs here, against the test cluster, end to end.

The demo's story is the product's story (pods pending → nodes added → pods Running → workload gone →
nodes removed), so this is also a scale-up/scale-down cycle through the chart's example NodeGroup.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hack.demo import NAMESPACE, run_demo
from hack.devcluster.cluster import ClusterHandle
from tests.e2e.harness import NODEGROUPS, VPSIENODES

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

DEMO_BUDGET_S = 300.0  # "< 5 minutes"


def test_demo_scales_up_and_down_and_cleans_up(
    k8s_cluster: ClusterHandle, e2e_crds: None, tmp_path: Path
) -> None:
    out = io.StringIO()
    timings = run_demo(k8s_cluster.kubeconfig, tmp_path, out)
    text = out.getvalue()
    print(text)
    assert timings["total_s"] < DEMO_BUDGET_S
    assert "kubectl get ng,vpsienodes,nodes" in text
    assert "TriggeredScaleUp" in text
    assert "scale-down done" in text
    client = k8s_cluster.client
    assert client.list_objects(NODEGROUPS) == []
    assert client.list_objects(VPSIENODES) == []
    assert client.list_objects("/api/v1/nodes", label_selector="cloudsim.vpsie.com/managed=true") == []
    client.wait_gone(f"/api/v1/namespaces/{NAMESPACE}", timeout=60)
