"""The AutoscalerSettings schema on a real API server: bad input is refused with the field and the
rule, as for NodeGroups, and the one object that is read is the one named ``default``."""

from __future__ import annotations

from typing import Any

import pytest

from hack.devcluster.client import ApiError, DevKubeClient
from hack.devcluster.cluster import ClusterHandle
from tests.integration.crds import install_crds
from vpsie_autoscaler.api.settings import MSG_SINGLETON

pytestmark = pytest.mark.cluster

SETTINGS = "/apis/autoscaler.vpsie.com/v1alpha1/autoscalersettings"
NODEGROUPS = "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups"
STATUS_UNPROCESSABLE = 422


@pytest.fixture
def api(k8s_cluster: ClusterHandle) -> DevKubeClient:
    install_crds(k8s_cluster.client)
    return k8s_cluster.client


def body(spec: dict[str, Any], name: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "AutoscalerSettings",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "name", "says"),
    [
        ({"expander": ["cheapest"]}, "default", "spec.expander[0]"),
        ({"expander": ["random", "random"]}, "default", "Duplicate value"),
        ({"scanInterval": "1h"}, "default", "must be a duration between 1s and 10m"),
        ({"scanInterval": "soon"}, "default", "spec.scanInterval"),
        ({"limits": {"maxNodesTotal": -1}}, "default", "spec.limits.maxNodesTotal"),
        ({"dryRun": True}, "staging", MSG_SINGLETON),
    ],
)
def test_bad_settings_are_refused_by_the_api_server_with_a_clear_message(
    api: DevKubeClient, spec: dict[str, Any], name: str, says: str
) -> None:
    with pytest.raises(ApiError) as refused:
        api.request("POST", SETTINGS, body(spec, name), query={"dryRun": "All"})
    assert refused.value.status == STATUS_UNPROCESSABLE
    assert says in refused.value.message


def test_good_settings_are_accepted(api: DevKubeClient) -> None:
    spec = {"expander": ["priority", "least-cost"], "limits": {"maxNodesTotal": 40}, "scanInterval": "15s"}
    created = api.request("POST", SETTINGS, body(spec), query={"dryRun": "All"})
    assert created["spec"] == spec


def test_a_nodegroup_that_leaves_scale_down_fields_out_keeps_them_out_for_the_settings_defaults(
    api: DevKubeClient,
) -> None:
    group: dict[str, Any] = {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": "settings-defaulted"},
        "spec": {
            "minNodes": 0,
            "maxNodes": 2,
            "vm": {"resourceIdentifier": "r", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "p"},
            "scaleDown": {"unneededTime": "3m"},
        },
    }
    stored = api.request("POST", NODEGROUPS, group, query={"dryRun": "All"})["spec"]["scaleDown"]
    assert stored["unneededTime"] == "3m"
    assert "utilizationThreshold" not in stored  # AutoscalerSettings scaleDownDefaults, else 0.5
    assert "delayAfterScaleUp" not in stored
    assert stored["maxGracefulTermination"] == "600s"  # the other fields keep their schema defaults
    del group["spec"]["scaleDown"]
    stored = api.request("POST", NODEGROUPS, group, query={"dryRun": "All"})["spec"]["scaleDown"]
    assert "unneededTime" not in stored
    assert stored["enabled"] is True
