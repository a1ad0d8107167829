"""The Helm chart ``charts/vpsie-autoscaler``: lint, render, validate, and the contracts it maps.

Rendering uses the helm binary from the local control-plane build (``make devcluster-build``). Without
it these tests skip, except with ``REQUIRE_DEVCLUSTER=1`` (``make test``, CI) where a missing helm is
a failure. Rendered manifests are validated offline against the Kubernetes OpenAPI schemas of
``kubernetes-validate`` (strict: unknown fields fail), the way kubeconform is used upstream.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import kubernetes_validate
import pytest
import yaml

from hack.chart import crds as chart_crds
from hack.devcluster.cluster import find_binaries
from tests.support.metrics_doc import base_metric_name, documented_metrics, promql_balanced, promql_metrics
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.vpsie.credentials import Credentials, read_credentials_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vpsie-autoscaler"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DASHBOARD = CHART / "dashboards" / "vpsie-autoscaler.json"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"
KUBERNETES_VERSION = "1.36.0"  # the local control plane runs 1.36
RELEASE = "rel"
NAMESPACE = "autoscaling"
FULLNAME = f"{RELEASE}-vpsie-autoscaler"
NONROOT_ID = 65532
HELM_TIMEOUT_S = 60
# Kinds whose schemas are not Kubernetes built-ins (Prometheus Operator CRDs).
NOT_BUILTIN = {"ServiceMonitor", "PrometheusRule"}
ENV_PREFIX = "VPSIE_AUTOSCALER_"
# Contract settings the chart does not set as env, and why.
ENV_NOT_FROM_CHART = {
    "KUBECONFIG": "in-cluster config",
    "VPSIE_CLIENT_ID": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
    "VPSIE_CLIENT_SECRET": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
    "VPSIE_API_TOKEN": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
}


# --- helm ------------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_DEVCLUSTER") == "1":
        pytest.fail(f"{reason} (REQUIRE_DEVCLUSTER=1: a missing helm is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    try:
        bin_dir = find_binaries()
    except FileNotFoundError as err:
        _unavailable(str(err))
    if bin_dir is None or not (bin_dir / "helm").exists():
        _unavailable("helm is not built; run `make devcluster-build`")
    return [str(bin_dir / "helm")]


class Helm:
    """Runs helm with its config and cache in a temporary home (never the user's)."""

    def __init__(self, command: list[str], home: Path) -> None:
        self.command = command
        self.home = home
        self._files = 0
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_S,
            check=False,
        )

    def values_file(self, values: dict[str, Any]) -> str:
        """A values file for ``-f`` (structured values that ``--set`` cannot express)."""
        self._files += 1
        path = self.home / f"values-{self._files}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    def template(self, *args: str) -> list[dict[str, Any]]:
        result = self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def h(helm: list[str], tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


def _one(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kinds(docs: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(docs)["containers"]
    return dict(container)


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(docs)["env"]}


VALUES_CASES = [pytest.param([], id="default")] + [pytest.param(["-f", str(p)], id=p.stem) for p in CI_VALUES]


# --- lint and validation ---------------------------------------------------------------------------------


def test_chart_app_version_is_the_package_version() -> None:
    """The default image tag is the appVersion: it must name the release being packaged."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_there_are_ci_values_files() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "single-replica-values.yaml",
        "existing-secret-monitoring-values.yaml",
        "dry-run-values.yaml",
    }


@pytest.mark.parametrize("values", VALUES_CASES)
def test_chart_passes_helm_lint_strict(h: Helm, values: list[str]) -> None:
    result = h.run("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout


@pytest.mark.parametrize("values", VALUES_CASES)
def test_rendered_manifests_are_valid_kubernetes_objects(h: Helm, values: list[str]) -> None:
    docs = h.template(*values)
    assert "Deployment" in _kinds(docs)
    for doc in docs:
        if doc["kind"] in NOT_BUILTIN:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:  # pragma: no cover - the failure message
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {err.message} at {list(err.path)}")


def test_kubernetes_validate_does_refuse_a_bad_manifest(h: Helm) -> None:
    deployment = _one(h.template(), "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_default_render_has_every_object_of_a_controller_install(h: Helm) -> None:
    assert _kinds(h.template()) == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )


# --- the pod -----------------------------------------------------------------------------------------------


def test_pod_runs_hardened(h: Helm) -> None:
    docs = h.template()
    pod, container = _pod(docs), _container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == NONROOT_ID
    assert pod["securityContext"]["runAsGroup"] == NONROOT_ID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsUser"] == NONROOT_ID
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the only writable path


def test_pod_runs_two_replicas_with_probes_and_graceful_shutdown(h: Helm) -> None:
    docs = h.template()
    deployment, pod, container = _one(docs, "Deployment"), _pod(docs), _container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert pod["automountServiceAccountToken"] is True
    assert pod["terminationGracePeriodSeconds"] > 30  # the controller's graceful shutdown takes up to 30 s
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 8080, "http-health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-health"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_topology_spread_over_zones_is_soft_and_gets_the_selector_labels(h: Helm) -> None:
    docs = h.template()
    (constraint,) = _pod(docs)["topologySpreadConstraints"]
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert constraint["labelSelector"] == {"matchLabels": selector}
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_pods_never_run_on_nodes_the_autoscaler_manages(h: Helm) -> None:
    """A controller on a node it manages could drain itself: required node affinity keeps it off."""
    (term,) = _pod(h.template())["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {"key": NODEGROUP_LABEL, "operator": "DoesNotExist"} in term["matchExpressions"]


def test_two_replicas_never_share_a_node(h: Helm) -> None:
    docs = h.template()
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    (term,) = _pod(docs)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}


def test_one_replica_drops_the_anti_affinity_but_keeps_off_managed_nodes(h: Helm) -> None:
    """With one replica the anti-affinity could only block a rolling update's surge pod."""
    affinity = _pod(h.template("--set", "replicaCount=1"))["affinity"]
    assert "podAntiAffinity" not in affinity
    assert affinity["nodeAffinity"]


def test_custom_affinity_overrides_the_default_and_gets_the_selector_labels(h: Helm) -> None:
    values = {
        "affinity": {  # Helm merges maps: null drops a default part
            "nodeAffinity": None,
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": None,
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone"}}
                ],
            },
        }
    }
    docs = h.template("-f", h.values_file(values))
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    affinity = _pod(docs)["affinity"]
    assert list(affinity) == ["podAntiAffinity"]
    (preferred,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["labelSelector"] == {"matchLabels": selector}
    assert "affinity" not in _pod(h.template("-f", h.values_file({"affinity": None})))


def test_escape_hatches_reach_the_pod(h: Helm) -> None:
    """A custom CA bundle (extra volume + mount + SSL_CERT_FILE), envFrom, pod and common labels."""
    values = {
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/corp-ca/ca.crt"}],
        "envFrom": [{"configMapRef": {"name": "proxy-settings"}}],
        "podLabels": {"cost-center": "infra"},
        "podAnnotations": {"example.com/owner": "platform"},
        "commonLabels": {"team": "platform"},
    }
    docs = h.template("-f", h.values_file(values))
    pod, container = _pod(docs), _container(docs)
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True} in container["volumeMounts"]
    assert _env(docs)["SSL_CERT_FILE"] == "/etc/corp-ca/ca.crt"
    assert container["envFrom"] == [{"configMapRef": {"name": "proxy-settings"}}]
    template = _one(docs, "Deployment")["spec"]["template"]["metadata"]
    assert template["labels"]["cost-center"] == "infra"
    assert template["annotations"] == {"example.com/owner": "platform"}
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            assert doc["metadata"]["labels"]["team"] == "platform", doc["kind"]
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert "team" not in selector  # a Deployment's selector is immutable: never extended


def test_proxy_settings_become_the_standard_variables(h: Helm) -> None:
    """HTTPS_PROXY / NO_PROXY as curl reads them; the API server always bypasses the proxy."""
    assert not {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"} & set(_env(h.template()))
    env = _env(
        h.template(
            "--set", "proxy.httpsProxy=http://proxy.corp:3128",
            "--set-string", "proxy.noProxy=internal.corp\\,10.0.0.1",
        )
    )  # fmt: skip
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128"
    assert "HTTP_PROXY" not in env
    no_proxy = env["NO_PROXY"].split(",")
    assert no_proxy[0] == "$(KUBERNETES_SERVICE_HOST)"  # expanded by the kubelet to the API server's IP
    assert {"kubernetes.default.svc", ".svc", ".cluster.local", "internal.corp", "10.0.0.1"} <= set(no_proxy)
    # The kubelet expands $(VAR) only from variables defined earlier or service variables.
    names = [e["name"] for e in _container(h.template("--set", "proxy.httpsProxy=http://p:1"))["env"]]
    assert names.index("NO_PROXY") > names.index("HTTPS_PROXY")


def _contract_env() -> set[str]:
    """The env names of the configuration contract table in docs/architecture.md."""
    text = ARCHITECTURE_DOC.read_text().split("## Configuration contract", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z_]+)`", first_cell))
    assert names, "no configuration contract table in docs/architecture.md"
    return {ENV_PREFIX + name for name in names}


@pytest.mark.parametrize("values", VALUES_CASES)
def test_env_maps_values_to_the_configuration_contract(h: Helm, values: list[str]) -> None:
    env = {name for name in _env(h.template(*values)) if name.startswith(ENV_PREFIX)}
    contract = _contract_env()
    assert env <= contract, f"not in the configuration contract: {sorted(env - contract)}"
    expected = contract - {ENV_PREFIX + name for name in ENV_NOT_FROM_CHART}
    assert env == expected, f"contract settings the chart does not map: {sorted(expected - env)}"


# Settings of `vpsie-autoscaler run` the chart leaves to their defaults, and why.
SETTINGS_NOT_FROM_CHART = {
    "kubeconfig": "in-cluster ServiceAccount",
    "vpsie_client_id": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
    "vpsie_client_secret": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
    "vpsie_api_token": "credentials are mounted files (VPSIE_CREDENTIALS_DIR)",
    "graceful_shutdown_timeout": "30 s default; terminationGracePeriodSeconds is set above it",
}


@pytest.mark.parametrize("values", VALUES_CASES)
def test_env_is_accepted_by_the_controller_settings(
    h: Helm, values: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the chart sets is what `vpsie-autoscaler run` reads, and every value passes its validation."""
    docs = h.template(*values)
    env = {k: v for k, v in _env(docs).items() if k.startswith(ENV_PREFIX)}
    fields = {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}
    assert set(env) <= set(fields), f"not a setting: {sorted(set(env) - set(fields))}"
    assert {fields[k] for k in env} | set(SETTINGS_NOT_FROM_CHART) == set(Settings.model_fields)
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, NAMESPACE if isinstance(value, dict) else value)
    settings = Settings()
    pod = _pod(docs)
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_shutdown_timeout
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.metrics_bind_address == f":{ports['http-metrics']}"
    assert settings.health_probe_bind_address == f":{ports['http-health']}"
    assert settings.namespace == NAMESPACE


def test_env_carries_the_values(h: Helm) -> None:
    env = _env(h.template("-f", str(CHART / "ci" / "dry-run-values.yaml"), "--set", "metrics.port=9090"))
    assert env[ENV_PREFIX + "NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env[ENV_PREFIX + "DRY_RUN"] == "true"
    assert env[ENV_PREFIX + "LOG_LEVEL"] == "debug"
    assert env[ENV_PREFIX + "LOG_FORMAT"] == "console"
    assert env[ENV_PREFIX + "MAX_NODES_TOTAL"] == "50"
    assert env[ENV_PREFIX + "EXPANDER"] == "least-cost,random"
    assert env[ENV_PREFIX + "METRICS_BIND_ADDRESS"] == ":9090"
    assert env[ENV_PREFIX + "VPSIE_CREDENTIALS_DIR"] == "/etc/vpsie"
    assert env["TZ"] == "UTC"  # extraEnv


def test_credentials_are_a_mounted_secret_created_by_the_chart(h: Helm) -> None:
    docs = h.template(
        "--set", "vpsie.credentials.clientId=id", "--set", "vpsie.credentials.clientSecret=s3cr3t"
    )
    secret = _one(docs, "Secret")
    assert secret["stringData"] == {"clientId": "id", "clientSecret": "s3cr3t"}
    pod, container = _pod(docs), _container(docs)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "vpsie-credentials")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert mounts["vpsie-credentials"]["mountPath"] == "/etc/vpsie"
    assert "subPath" not in mounts["vpsie-credentials"]  # subPath mounts never see a rotated Secret
    assert all("s3cr3t" not in json.dumps(e) for e in container["env"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("vpsie.credentials.clientId=id,vpsie.credentials.clientSecret=s3cr3t", Credentials("id", "s3cr3t")),
        ("vpsie.credentials.apiToken=t0ken", Credentials(api_token="t0ken")),
    ],
)
def test_chart_secret_is_what_the_controller_reads(
    h: Helm, tmp_path: Path, values: str, expected: Credentials
) -> None:
    """The Secret's keys become the files of VPSIE_CREDENTIALS_DIR, read by the VPSie package."""
    secret = _one(h.template("--set", values), "Secret")
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value)
    assert read_credentials_dir(tmp_path) == expected


def test_existing_secret_is_used_and_none_is_created(h: Helm) -> None:
    docs = h.template("--set", "vpsie.existingSecret=my-vpsie")
    assert "Secret" not in _kinds(docs)
    volume = next(v for v in _pod(docs)["volumes"] if v["name"] == "vpsie-credentials")
    assert volume["secret"]["secretName"] == "my-vpsie"


def test_single_replica_without_leader_election_never_overlaps(h: Helm) -> None:
    docs = h.template("-f", str(CHART / "ci" / "single-replica-values.yaml"))
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert _env(docs)[ENV_PREFIX + "LEADER_ELECT"] == "false"
    assert not {"Role", "RoleBinding"} & set(_kinds(docs))  # no Lease, so no namespaced access at all


# --- values and schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set-string", "replicaCount=two"], "/replicaCount"),
        (["--set", "replicaCount=0"], "/replicaCount"),
        (["--set", "logging.level=verbose"], "/logging/level"),
        (["--set", "logging.format=xml"], "/logging/format"),
        (["--set", "expander=cheapest"], "/expander"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
        (["--set", "terminationGracePeriodSeconds=10"], "/terminationGracePeriodSeconds"),
        (["--set", "vpsie.existingSecret=Not_A_Name"], "/vpsie/existingSecret"),
        (["--set", "vpsie.baseUrl=api.vpsie.com"], "/vpsie/baseUrl"),
        (["--set", "limits.maxNodesTotal=-1"], "/limits/maxNodesTotal"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "replicas=3"], "replicas"),  # a typo of replicaCount: unknown keys are refused
        (["--set", "metrics.serviceMonitor.interval=30"], "/metrics/serviceMonitor/interval"),
    ],
)
def test_schema_refuses_bad_values(h: Helm, args: list[str], message: str) -> None:
    result = h.run("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0, f"accepted {args}"
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "leaderElection.enabled=false"], "needs replicaCount: 1"),
        (["--set", "leaderElection.leaseDuration=10"], "leaseDuration must be greater than"),
        (["--set", "leaderElection.retryPeriod=9"], "renewDeadline must be greater than 1.2 x"),
        (["--set", "vpsie.credentials.clientId=only-the-id"], "needs both clientId and clientSecret"),
        (
            [
                "--set",
                "vpsie.credentials.clientId=i,vpsie.credentials.clientSecret=s,vpsie.credentials.apiToken=t",
            ],
            "either clientId + clientSecret or apiToken, not both",
        ),
        (
            ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
            "serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ],
)
def test_template_refuses_settings_that_cannot_work_together(h: Helm, args: list[str], message: str) -> None:
    result = h.run("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0, f"accepted {args}"
    assert message in result.stderr, result.stderr


def _readme_section(heading: str) -> str:
    text = (CHART / "README.md").read_text().split(heading + "\n", 1)[1]
    return text.split("\n## ", 1)[0]


def _leaf_paths(values: Any, prefix: str = "") -> set[str]:
    if isinstance(values, dict) and values:
        out: set[str] = set()
        for key, value in values.items():
            out |= _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return out
    return {prefix}


# Maps of free-form content: documented as one entry, not per key.
FREE_FORM = ("resources", "podSecurityContext", "securityContext", "grafanaDashboard.labels", "affinity")


def test_every_value_has_a_description_and_a_readme_row() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = _readme_section("## Values")
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(schema["properties"]) == set(values)
    for key, prop in schema["properties"].items():
        assert prop.get("description"), f"schema: {key} has no description"
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    paths = {
        next((f for f in FREE_FORM if path == f or path.startswith(f + ".")), path)
        for path in _leaf_paths(values)
    }
    assert paths - documented == set(), "values missing from the README values reference"
    assert documented - paths == set(), "README documents values that do not exist"


# --- CRDs -----------------------------------------------------------------------------------------------


def test_chart_crds_are_the_crds_command_output() -> None:
    """`make chart-crds` output is committed: the chart never ships stale CRDs."""
    assert chart_crds.main(["--check"]) == 0


def test_rendered_crds_equal_vpsie_autoscaler_crds(h: Helm) -> None:
    expected = [doc for doc in yaml.safe_load_all(chart_crds.crds_output()) if doc]
    rendered = [d for d in h.template("--set", "crds.keep=false") if d["kind"] == "CustomResourceDefinition"]
    assert sorted(rendered, key=lambda d: d["metadata"]["name"]) == sorted(
        expected, key=lambda d: d["metadata"]["name"]
    )


def test_crds_are_kept_on_uninstall_by_default(h: Helm) -> None:
    crds = [d for d in h.template() if d["kind"] == "CustomResourceDefinition"]
    assert {d["metadata"]["name"] for d in crds} == {
        "nodegroups.autoscaler.vpsie.com",
        "vpsienodes.autoscaler.vpsie.com",
        "autoscalersettings.autoscaler.vpsie.com",
    }
    assert all(d["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"} for d in crds)


def test_crds_can_be_left_out(h: Helm) -> None:
    assert "CustomResourceDefinition" not in _kinds(h.template("--set", "crds.enabled=false"))


def test_crd_wrapper_refuses_a_non_crd_document() -> None:
    with pytest.raises(ValueError, match="expected a CustomResourceDefinition"):
        chart_crds.template_for("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")


# --- RBAC -----------------------------------------------------------------------------------------------

# (apiGroup, resource, verbs): exactly what the controller's code paths use (comments in clusterrole.yaml).
CLUSTER_RULES = {
    ("", "nodes", ("delete", "get", "list", "patch", "update", "watch")),
    ("", "pods", ("get", "list", "watch")),
    ("", "pods/eviction", ("create",)),
    ("policy", "poddisruptionbudgets", ("list", "watch")),
    ("apps", "daemonsets", ("list", "watch")),
    ("", "persistentvolumeclaims", ("list", "watch")),
    ("", "persistentvolumes", ("list", "watch")),
    ("events.k8s.io", "events", ("create", "patch")),
    ("autoscaler.vpsie.com", "nodegroups", ("create", "delete", "get", "list", "patch", "update", "watch")),
    ("autoscaler.vpsie.com", "vpsienodes", ("create", "delete", "get", "list", "patch", "update", "watch")),
    ("autoscaler.vpsie.com", "nodegroups/status", ("get", "patch", "update")),
    ("autoscaler.vpsie.com", "vpsienodes/status", ("get", "patch", "update")),
    ("autoscaler.vpsie.com", "autoscalersettings", ("get", "list", "watch")),
    ("autoscaler.vpsie.com", "autoscalersettings/status", ("get", "patch", "update")),
    ("autoscaler.vpsie.com", "nodegroups/finalizers", ("update",)),
    ("autoscaler.vpsie.com", "vpsienodes/finalizers", ("update",)),
}


def _flatten(rules: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    return {
        (group, resource, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", ())))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_cluster_role_is_exactly_what_the_controller_uses(h: Helm) -> None:
    rules = _flatten(_one(h.template(), "ClusterRole")["rules"])
    # The cluster identity in VM ownership tags: one namespace, read only.
    named = {("", "namespaces", ("get",), ("kube-system",))}
    assert rules == {(g, r, v, ()) for g, r, v in CLUSTER_RULES} | named
    assert not any("*" in (g, r) or "*" in v for g, r, v, _ in rules)


def test_namespaced_roles_are_limited_to_named_objects(h: Helm) -> None:
    docs = h.template()
    role = _one(docs, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _flatten(role["rules"]) == {
        ("coordination.k8s.io", "leases", ("get", "update", "watch"), ("vpsie-autoscaler",)),
        ("coordination.k8s.io", "leases", ("create",), ()),
    }
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == [FULLNAME]
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_rbac_can_be_left_to_an_administrator(h: Helm) -> None:
    kinds = _kinds(h.template("--set", "rbac.create=false"))
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & set(kinds)


# --- metrics, alerts, dashboard ------------------------------------------------------------------------


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_promql_extraction_finds_metrics_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, operation) "
        '(rate(foo_seconds_bucket{job="x", code!~"2.."}[5m]))) > 10'
        " and on() absent(bar_total) or max without (pod) (baz_nodes offset 5m) > bool 0"
    )
    assert promql_metrics(expr) == {"foo_seconds_bucket", "bar_total", "baz_nodes"}


def test_promql_balance_check_catches_a_missing_parenthesis() -> None:
    assert promql_balanced('sum(rate(x{a="(("}[5m]))')
    assert not promql_balanced("sum(rate(x[5m])")
    assert not promql_balanced("max(x{a=1)}")


def test_an_undocumented_metric_is_caught() -> None:
    documented = documented_metrics()
    used = {
        base_metric_name(n, documented) for n in promql_metrics("rate(vpsie_autoscaler_scale_ups_total[5m])")
    }
    assert used - set(documented) == {"vpsie_autoscaler_scale_ups_total"}


def test_metrics_reference_lists_the_contract() -> None:
    documented = documented_metrics()
    assert len(documented) == 32
    assert {name for name, kind in documented.items() if kind == "histogram"} == {
        "vpsie_autoscaler_scale_up_decision_latency_seconds",
        "vpsie_autoscaler_node_provision_duration_seconds",
        "vpsie_autoscaler_drain_duration_seconds",
        "vpsie_autoscaler_drain_evicted_pods",
        "vpsie_autoscaler_vpsie_api_request_duration_seconds",
    }
    assert all(name.endswith("_total") for name, kind in documented.items() if kind == "counter")


def test_dashboard_uses_only_documented_metrics() -> None:
    documented = documented_metrics()
    used = {
        base_metric_name(name, documented)
        for expr in _dashboard_exprs()
        # label_values(metric, label): the second argument is a label name
        for name in promql_metrics(re.sub(r",\s*\w+\)$", ")", expr))
    }
    assert used - set(documented) == set()
    assert all(promql_balanced(expr) for expr in _dashboard_exprs())
    # Every documented metric is on the dashboard.
    assert set(documented) - used == set()


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "vpsie-autoscaler"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_alerts_use_only_documented_metrics(h: Helm) -> None:
    docs = h.template("-f", str(CHART / "ci" / "existing-secret-monitoring-values.yaml"))
    rule = _one(docs, "PrometheusRule")
    documented = documented_metrics()
    (group,) = rule["spec"]["groups"]
    ours = [
        r
        for r in group["rules"]
        if r["alert"].startswith("VPSieAutoscaler") and "HighHourlyCost" not in r["alert"]
    ]
    assert len(ours) >= 10
    for alert in ours:
        assert promql_balanced(alert["expr"]), alert["alert"]
        used = {base_metric_name(name, documented) for name in promql_metrics(alert["expr"])}
        assert used, alert["alert"]
        assert used - set(documented) == set(), alert["alert"]
        # Generic runtime metrics are shared with other controllers: every selector names our job.
        assert f'job="{FULLNAME}-metrics"' in alert["expr"], alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["labels"]["team"] == "platform"  # alertLabels
        assert alert["annotations"]["summary"]
    assert any(r["alert"] == "VPSieAutoscalerHighHourlyCost" for r in group["rules"])  # extraRules


def test_readme_lists_exactly_the_alerts(h: Helm) -> None:
    rules = _one(h.template("--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")["spec"][
        "groups"
    ][0]
    documented = re.findall(
        r"^\| `(\w+)` \|", _readme_section("## Alerts (`metrics.prometheusRule.enabled`)"), re.M
    )
    assert sorted(documented) == sorted(r["alert"] for r in rules["rules"])


def test_alert_annotations_keep_prometheus_templates(h: Helm) -> None:
    docs = h.template("--set", "metrics.prometheusRule.enabled=true")
    rules = {r["alert"]: r for r in _one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "{{ $labels.nodegroup }}" in rules["VPSieAutoscalerNodeGroupBackoff"]["annotations"]["summary"]


def test_service_monitor_scrapes_the_metrics_service(h: Helm) -> None:
    docs = h.template("-f", str(CHART / "ci" / "existing-secret-monitoring-values.yaml"))
    service, monitor = _one(docs, "Service"), _one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "http-metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    dashboard = _one(docs, "ConfigMap")
    assert json.loads(dashboard["data"]["vpsie-autoscaler.json"]) == json.loads(DASHBOARD.read_text())


# --- examples ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((CHART / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_valid_nodegroups(path: Path) -> None:
    group = NodeGroup.from_k8s(yaml.safe_load(path.read_text()))
    assert group.spec.min_nodes <= group.spec.max_nodes


def test_examples_cover_both_node_sources() -> None:
    groups = [NodeGroup.from_k8s(yaml.safe_load(p.read_text())) for p in (CHART / "examples").glob("*.yaml")]
    assert any(g.spec.managed for g in groups)
    assert any(g.spec.vm for g in groups)
