"""``helm install --wait`` of the chart into the real local control plane.

kwok plays the kubelet: the Deployment's pods are scheduled onto a kwok Node and reported Ready
without running, which is what ``--wait`` needs. What is real: the API server's validation of every
object the chart renders (including the CRDs' OpenAPI schemas and CEL rules, which the example
NodeGroups must pass), admission (priority class), RBAC for the chart's ServiceAccount, and Helm's
install/uninstall semantics (CRDs kept on uninstall).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.devcluster.client import ApiError, DevKubeClient, JsonObj, condition_is
from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL, make_kwok_node
from tests.integration.chart import CHART, InstalledChart, install_chart, start_controller, uninstall_chart
from tests.support.metrics_doc import documented_metrics
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL

pytestmark = pytest.mark.cluster

NODE_READY_S = 60.0
CRD_ESTABLISHED_S = 30.0
CRDS = (
    "nodegroups.autoscaler.vpsie.com",
    "vpsienodes.autoscaler.vpsie.com",
    "autoscalersettings.autoscaler.vpsie.com",
)
NODEGROUPS = "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups"
STATUS_FORBIDDEN = 403
STATUS_UNPROCESSABLE = 422
CREDENTIALS = {"vpsie.credentials.clientId": "test-id", "vpsie.credentials.clientSecret": "test-secret"}


@pytest.fixture
def installed(k8s_cluster: ClusterHandle, k8s_namespace: str, tmp_path: Path) -> Iterator[InstalledChart]:
    """The chart installed with default values (plus credentials), pods pinned to this test's nodes:
    two plain ones and one a NodeGroup manages (the chart's placement must keep the pods off it)."""
    client, ns = k8s_cluster.client, k8s_namespace
    for node, labels in (
        (f"{ns}-managed", {NODEGROUP_LABEL: "general"}),
        (f"{ns}-a", {}),
        (f"{ns}-b", {}),
    ):
        client.create_node(make_kwok_node(node, cpu="4", memory="8Gi", labels={OWNER_LABEL: ns, **labels}))
        client.wait_node_ready(node, timeout=NODE_READY_S)
    chart = install_chart(k8s_cluster, ns, tmp_path, values=CREDENTIALS)
    try:
        yield chart
    finally:
        uninstall_chart(k8s_cluster, chart, tmp_path)


def test_install_waits_for_a_ready_deployment(k8s_cluster: ClusterHandle, installed: InstalledChart) -> None:
    client = k8s_cluster.client
    deployment = client.get(
        f"/apis/apps/v1/namespaces/{installed.namespace}/deployments/{installed.fullname}"
    )
    assert deployment["status"].get("readyReplicas") == 2  # --wait returned only once both were Ready
    pods = client.list_objects(
        f"/api/v1/namespaces/{installed.namespace}/pods",
        label_selector=f"app.kubernetes.io/instance={installed.release}",
    )
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
        assert pod["spec"]["securityContext"]["runAsUser"] == 65532
    # The scheduler placed them by the chart's affinity: one per node, never on a managed node.
    placed = sorted(pod["spec"]["nodeName"] for pod in pods)
    assert placed == [f"{installed.namespace}-a", f"{installed.namespace}-b"]
    assert f"kubectl -n {installed.namespace} get deploy,pods" in installed.notes  # NOTES.txt


def test_crds_are_established_and_examples_pass_their_validation(
    k8s_cluster: ClusterHandle, installed: InstalledChart
) -> None:
    client = k8s_cluster.client
    for name in CRDS:
        client.wait_for(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            lambda crd: condition_is(crd, "Established", "True"),
            timeout=CRD_ESTABLISHED_S,
            what=f"CRD {name} Established",
        )
    for path in sorted((CHART / "examples").glob("*.yaml")):
        example = yaml.safe_load(path.read_text())
        created = client.request("POST", NODEGROUPS, example, query={"dryRun": "All"})
        assert created["spec"]["minNodes"] == example["spec"]["minNodes"], path.name
    # ...and the schema's CEL rules are live: a group with minNodes > maxNodes is refused.
    bad: dict[str, Any] = yaml.safe_load((CHART / "examples" / "nodegroup-managed.yaml").read_text())
    bad["spec"].update(minNodes=5, maxNodes=1)
    with pytest.raises(ApiError) as refused:
        client.request("POST", NODEGROUPS, bad, query={"dryRun": "All"})
    assert refused.value.status == STATUS_UNPROCESSABLE
    assert "minNodes must be less than or equal to maxNodes" in json.dumps(refused.value.body)


def _can(
    client: DevKubeClient, verb: str, resource: str, *, group: str = "", namespace: str = "", name: str = ""
) -> bool:
    base, _, subresource = resource.partition("/")
    attrs: JsonObj = {"verb": verb, "resource": base, "group": group}
    if subresource:
        attrs["subresource"] = subresource
    if namespace:
        attrs["namespace"] = namespace
    if name:
        attrs["name"] = name
    review = client.create(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        },
    )
    return bool(review["status"]["allowed"])


def test_service_account_gets_exactly_the_chart_rbac(
    k8s_cluster: ClusterHandle, installed: InstalledChart
) -> None:
    ns, fullname = installed.namespace, installed.service_account
    token = k8s_cluster.client.request_token(ns, fullname)
    sa = k8s_cluster.client.with_token(token)
    allowed = [
        ("watch", "nodes", "", "", ""),
        ("delete", "nodes", "", "", ""),
        ("list", "pods", "", "", ""),
        ("create", "pods/eviction", "", "some-ns", ""),
        ("watch", "poddisruptionbudgets", "policy", "", ""),
        ("create", "events", "events.k8s.io", "some-ns", ""),
        ("patch", "nodegroups/status", "autoscaler.vpsie.com", "", ""),
        ("update", "vpsienodes/finalizers", "autoscaler.vpsie.com", "", ""),
        ("update", "leases", "coordination.k8s.io", ns, "vpsie-autoscaler"),
        ("watch", "leases", "coordination.k8s.io", ns, "vpsie-autoscaler"),
        ("create", "leases", "coordination.k8s.io", ns, ""),
    ]
    denied = [
        ("delete", "pods", "", "some-ns", ""),  # pods leave through the Eviction API only
        ("create", "nodes", "", "", ""),
        ("get", "secrets", "", ns, f"{fullname}-vpsie"),  # credentials are mounted files
        ("get", "secrets", "", ns, "another-secret"),
        ("list", "secrets", "", "", ""),
        ("update", "leases", "coordination.k8s.io", ns, "someone-elses-lease"),
        ("update", "leases", "coordination.k8s.io", "kube-system", "vpsie-autoscaler"),
        ("get", "configmaps", "", "kube-public", "cluster-info"),
        ("create", "events", "", "some-ns", ""),  # core/v1 events are not used
        ("patch", "deployments", "apps", ns, ""),
    ]
    for verb, resource, group, namespace, name in allowed:
        assert _can(sa, verb, resource, group=group, namespace=namespace, name=name), (
            verb,
            resource,
            namespace,
            name,
        )
    for verb, resource, group, namespace, name in denied:
        assert not _can(sa, verb, resource, group=group, namespace=namespace, name=name), (
            verb,
            resource,
            namespace,
        )


def test_named_object_rules_work_for_real_requests(
    k8s_cluster: ClusterHandle, installed: InstalledChart
) -> None:
    """resourceNames rules admit list/watch only when the request selects that one name."""
    ns = installed.namespace
    sa = k8s_cluster.client.with_token(k8s_cluster.client.request_token(ns, installed.service_account))
    with pytest.raises(ApiError) as forbidden:
        sa.get(f"/api/v1/namespaces/{ns}/secrets/{installed.credentials_secret}")
    assert forbidden.value.status == STATUS_FORBIDDEN  # credentials reach the pod as mounted files
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    # The leader elector's watch: a short one, selecting the Lease by name, is allowed...
    sa.get(
        leases,
        query={
            "watch": "true",
            "fieldSelector": f"metadata.name={installed.lease_name}",
            "timeoutSeconds": "1",
        },
    )
    # ...and the same watch over every Lease is not.
    with pytest.raises(ApiError) as unselected:
        sa.get(leases, query={"watch": "true", "timeoutSeconds": "1"})
    assert unselected.value.status == STATUS_FORBIDDEN


def test_uninstall_keeps_the_crds(k8s_cluster: ClusterHandle, k8s_namespace: str, tmp_path: Path) -> None:
    client = k8s_cluster.client
    chart = install_chart(
        k8s_cluster,
        k8s_namespace,
        tmp_path,
        release="vpk",
        values={"replicaCount": "1", "leaderElection.enabled": "false"},
        wait=False,
    )
    uninstall = uninstall_chart(k8s_cluster, chart, tmp_path)
    assert uninstall.returncode == 0, uninstall.stdout + uninstall.stderr
    assert "kept due to the resource policy" in uninstall.stdout + uninstall.stderr
    for name in CRDS:
        assert (
            client.get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") is not None
        )
    assert client.get_or_none(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{chart.fullname}") is None


# Granted to every authenticated user by the built-in system:basic-user ClusterRole.
BASIC_USER_RULES = {
    ("authorization.k8s.io", "selfsubjectaccessreviews", ("create",), ()),
    ("authorization.k8s.io", "selfsubjectrulesreviews", ("create",), ()),
    ("authentication.k8s.io", "selfsubjectreviews", ("create",), ()),
}


def _rules(client: DevKubeClient, namespace: str) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """What ``kubectl auth can-i --list -n <namespace>`` shows, flattened per group and resource."""
    review = client.create(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
    )
    assert review["status"].get("incomplete") is not True, review["status"]
    return {
        (group, resource, tuple(sorted(rule["verbs"])), tuple(sorted(rule.get("resourceNames", []))))
        for rule in review["status"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_can_i_list_shows_nothing_beyond_the_chart_rules(
    k8s_cluster: ClusterHandle, installed: InstalledChart
) -> None:
    ns, fullname = installed.namespace, installed.service_account
    sa = k8s_cluster.client.with_token(k8s_cluster.client.request_token(ns, fullname))
    cluster_wide = {
        ("", "nodes", ("delete", "get", "list", "patch", "update", "watch"), ()),
        ("", "pods", ("get", "list", "watch"), ()),
        ("", "pods/eviction", ("create",), ()),
        ("policy", "poddisruptionbudgets", ("list", "watch"), ()),
        # The node template's DaemonSet overhead; local PersistentVolumes that keep their node.
        ("apps", "daemonsets", ("list", "watch"), ()),
        ("", "persistentvolumes", ("list", "watch"), ()),
        ("", "persistentvolumeclaims", ("list", "watch"), ()),
        # The live global settings: read, and a status condition written.
        ("autoscaler.vpsie.com", "autoscalersettings", ("get", "list", "watch"), ()),
        ("autoscaler.vpsie.com", "autoscalersettings/status", ("get", "patch", "update"), ()),
        ("events.k8s.io", "events", ("create", "patch"), ()),
        *(
            (
                "autoscaler.vpsie.com",
                plural,
                ("create", "delete", "get", "list", "patch", "update", "watch"),
                (),
            )
            for plural in ("nodegroups", "vpsienodes")
        ),
        *(
            ("autoscaler.vpsie.com", f"{p}/status", ("get", "patch", "update"), ())
            for p in ("nodegroups", "vpsienodes")
        ),
        *(("autoscaler.vpsie.com", f"{p}/finalizers", ("update",), ()) for p in ("nodegroups", "vpsienodes")),
        # The cluster identity in VM ownership tags: the kube-system namespace, read only.
        ("", "namespaces", ("get",), ("kube-system",)),
    }
    assert _rules(sa, ns) == BASIC_USER_RULES | cluster_wide | {
        ("coordination.k8s.io", "leases", ("get", "update", "watch"), ("vpsie-autoscaler",)),
        ("coordination.k8s.io", "leases", ("create",), ()),
    }
    assert _rules(sa, "kube-public") == BASIC_USER_RULES | cluster_wide
    assert _rules(sa, "default") == BASIC_USER_RULES | cluster_wide


def _gauge(metrics: str, sample: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_controller_runs_with_the_chart_service_account_and_settings(
    k8s_cluster: ClusterHandle, installed: InstalledChart, tmp_path: Path
) -> None:
    """`vpsie-autoscaler run` with the Deployment's env, the Secret's files and the chart's RBAC only:
    it leads, gets ready (every informer listed and watched) and exposes every documented metric."""
    controller = start_controller(k8s_cluster, installed, tmp_path)
    try:
        controller.wait_ready()
        lease_sample = f'leader_election_master_status{{name="{installed.lease_name}"}}'
        controller.wait_until(lambda: _gauge(controller.metrics(), lease_sample) == 1.0, "leadership")
        lease = k8s_cluster.client.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{installed.namespace}/leases/{installed.lease_name}"
        )
        assert lease["spec"]["holderIdentity"]
        exposed = {
            line.split()[2] for line in controller.metrics().splitlines() if line.startswith("# TYPE ")
        }
        # The metrics contract: every metric the dashboard and the alerts rely on is exposed.
        missing = set(documented_metrics()) - exposed
        assert not missing, f"documented in docs/metrics.md but not exposed: {sorted(missing)}"
    finally:
        code = controller.stop()
    log = controller.log.read_text(errors="replace")
    assert code == 0, log[-4000:]
    # Every informer and write of the registered controllers works with the chart's RBAC alone.
    assert "forbidden" not in log.lower(), log[-4000:]
    assert '"level":"error"' not in log, log[-4000:]
