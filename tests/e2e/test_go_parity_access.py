"""The Go system's access features, end to end: the stock ``vpsie-secret`` (``token`` and ``url``),
Sentry reports of what went wrong (scrubbed), and the form-encoded login fallback.

The autoscaler runs as a real process against the local control plane and the simulator. Its
credentials come from a Secret in the cluster whose keys are written as files, the way the kubelet
mounts them (the chart mounts the Secret; ``--vpsie-credentials-dir`` reads the files). Sentry is a
fake endpoint on 127.0.0.1 that records the envelopes the official sentry-sdk sends.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.devcluster.cluster import ClusterHandle, free_port
from tests.e2e.harness import (
    ADVANCED,
    E2E,
    SIM_CLIENT_SECRET,
    Autoscaler,
    CloudSim,
    JsonObj,
    Process,
    http_json,
    nodegroup,
)
from tests.support.fake_sentry import FakeSentry
from vpsie_autoscaler import __version__

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S = 90.0
CONDITION_S = 60.0
CREDENTIALS_S = 60.0  # the controller re-reads the mounted files every 10 s
LOGIN = "/apps/v2/auth/from/api"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
SECRET_NAME = "vpsie-secret"


@dataclass
class MountedSecretAutoscaler(Autoscaler):
    """``vpsie-autoscaler run`` with no VPSie flag or variable: the base URL and the credentials come
    from the mounted Secret alone; Sentry from its environment variable."""

    credentials_dir: Path = Path()
    sentry_dsn: str = ""

    def argv(self) -> list[str]:
        args = super().argv()
        for flag in ("--vpsie-base-url", "--vpsie-client-id"):
            at = args.index(flag)
            del args[at : at + 2]
        return [*args, "--vpsie-credentials-dir", str(self.credentials_dir)]

    def start(self) -> MountedSecretAutoscaler:
        self.metrics_port = free_port(f"e2e-metrics-{self.name}-{self.starts}")
        self.health_port = free_port(f"e2e-health-{self.name}-{self.starts}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPSIE_AUTOSCALER_")}
        env["VPSIE_AUTOSCALER_SENTRY_DSN"] = self.sentry_dsn
        env["VPSIE_AUTOSCALER_SENTRY_ENVIRONMENT"] = "e2e"
        self.process = Process(self.name, self.argv(), self.workdir / f"{self.name}.log", env)
        self.history.append(self.process)
        self.process.start()
        self.starts += 1
        return self


def put_secret(e2e: E2E, data: dict[str, str]) -> JsonObj:
    """Create or replace the namespace's ``vpsie-secret`` with exactly ``data``."""
    path = f"/api/v1/namespaces/{e2e.namespace}/secrets"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    e2e.client.delete(f"{path}/{SECRET_NAME}")
    return e2e.client.create(path, body)


def mount(e2e: E2E, directory: Path) -> None:
    """The Secret's keys as files in ``directory`` (what the kubelet does for a Secret volume)."""
    secret = e2e.client.get(f"/api/v1/namespaces/{e2e.namespace}/secrets/{SECRET_NAME}")
    directory.mkdir(exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for key, value in (secret.get("data") or {}).items():
        (directory / key).write_bytes(base64.b64decode(value))


def condition(group: JsonObj, kind: str) -> JsonObj:
    found = ((group.get("status") or {}).get("conditions")) or []
    return next((c for c in found if c.get("type") == kind), {})


def sentry_messages(sentry: FakeSentry) -> list[str]:
    return [str(e.get("message") or (e.get("logentry") or {}).get("message")) for e in sentry.events()]


def test_the_stock_vpsie_secret_runs_the_autoscaler_and_a_partial_one_is_reported_never_fatal(
    e2e: E2E, k8s_cluster: ClusterHandle
) -> None:
    sim_url = e2e.sim.base_url
    api_token = json.loads(e2e.sim.ready_file.read_text())["api_token"]
    mounted = e2e.workdir / "vpsie-secret"
    with FakeSentry() as sentry:
        # A partial Secret: the stock url (with the Go client's /apps/v2 base) and a clientSecret alone.
        put_secret(e2e, {"url": f"{sim_url}/apps/v2", "clientSecret": SIM_CLIENT_SECRET})
        mount(e2e, mounted)
        scaler = MountedSecretAutoscaler(
            workdir=e2e.workdir,
            name="stock-secret",
            kubeconfig=e2e.kubeconfig,
            sim=e2e.sim,
            namespace=e2e.namespace,
            lease_id=f"vpsie-autoscaler-{e2e.namespace}"[:63],
            credentials_dir=mounted,
            sentry_dsn=sentry.dsn,
        )
        e2e.autoscalers.append(scaler)
        scaler.start()
        scaler.wait_ready()
        scaler.wait_leader()
        e2e.apply_nodegroup(nodegroup("stock-secret", ADVANCED, min_nodes=1, max_nodes=2))

        group = e2e.wait(
            lambda: e2e.get_nodegroup("stock-secret"),
            lambda g: condition(g, "CloudError").get("status") == "True",
            timeout=CONDITION_S,
            what="CloudError for the partial Secret",
        )
        assert "missing clientId" in condition(group, "CloudError")["message"]
        [event] = e2e.wait_nodegroup_event("stock-secret", "CloudError")[-1:]
        assert "missing clientId" in event["note"]
        assert e2e.sim.requests() == []  # nothing was sent with half the credentials

        # The error reached Sentry, tagged; the secret value reached neither Sentry nor anything else.
        events = e2e.wait(
            sentry.events,
            lambda evs: any("vpsie.unconfigured" in m for m in sentry_messages(sentry)),
            timeout=CONDITION_S,
            what="the Sentry report of the unusable Secret",
        )
        reported = next(e for e in events if "vpsie.unconfigured" in str(e))
        kube_system = e2e.client.get("/api/v1/namespaces/kube-system")
        assert reported["tags"]["version"] == __version__
        assert reported["tags"]["cluster"] == kube_system["metadata"]["uid"]
        assert reported["environment"] == "e2e"
        for text in (sentry.raw(), scaler.proc.tail(10_000), e2e.all_events_text(), json.dumps(group)):
            assert SIM_CLIENT_SECRET not in text

        # The stock format: token and url (the clientSecret beside the token is ignored, as the Go
        # system did). The running process picks it up: no restart, no crash.
        put_secret(e2e, {"token": api_token, "url": f"{sim_url}/apps/v2/", "clientSecret": SIM_CLIENT_SECRET})
        mount(e2e, mounted)
        e2e.wait(
            lambda: e2e.live_vpsienodes("stock-secret"),
            lambda vns: len(vns) == 1 and all((v.get("status") or {}).get("phase") == "Ready" for v in vns),
            timeout=CREDENTIALS_S + SCALE_UP_S,
            what="minNodes reached through the stock Secret",
        )
        group = e2e.wait(
            lambda: e2e.get_nodegroup("stock-secret"),
            lambda g: condition(g, "CloudError").get("status") == "False",
            timeout=CONDITION_S,
            what="CloudError cleared",
        )
        assert len(e2e.sim.workers(ADVANCED)) == 1
        state: dict[str, Any] = http_json("GET", f"{sim_url}/_sim/state")
        assert state["logins"] == 0, "the Secret's token is used as it is: no login"
        assert scaler.starts == 1
        assert scaler.proc.alive()
        assert "credentials.ignored" in scaler.proc.tail(10_000)
        for text in (sentry.raw(), scaler.proc.tail(10_000)):
            assert api_token not in text
            assert SIM_CLIENT_SECRET not in text


# --- login encoding ------------------------------------------------------------------------------------


@pytest.fixture
def form_login_e2e(
    k8s_cluster: ClusterHandle, k8s_namespace: str, e2e_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    """The e2e stack with a simulator whose login parses only form bodies: the API as VPSie's Go
    autoscaler found it (a JSON login gets 401)."""
    workdir = tmp_path_factory.mktemp("e2e-form-login")
    sim = CloudSim(workdir, k8s_cluster.kubeconfig)
    config = yaml.safe_load(sim.config_path.read_text())
    config["login_body"] = "form"
    sim.config_path.write_text(yaml.safe_dump(config))
    harness = E2E(k8s_cluster.client, k8s_cluster.kubeconfig, k8s_namespace, workdir, sim.start())
    try:
        yield harness
    finally:
        harness.cleanup()


def logins(e2e: E2E) -> list[tuple[str, int]]:
    return [(r.get("content_type", ""), r["status"]) for r in e2e.sim.requests() if r["path"] == LOGIN]


def test_a_refused_json_login_falls_back_to_the_form_body_and_keeps_it(form_login_e2e: E2E) -> None:
    e2e = form_login_e2e
    e2e.autoscaler()
    e2e.apply_nodegroup(nodegroup("form-login", ADVANCED, min_nodes=1, max_nodes=2))
    e2e.wait(
        lambda: e2e.live_vpsienodes("form-login"),
        lambda vns: len(vns) == 1 and all((v.get("status") or {}).get("phase") == "Ready" for v in vns),
        timeout=SCALE_UP_S,
        what="minNodes reached after a form-encoded login",
    )
    assert logins(e2e)[:2] == [(JSON, 401), (FORM, 200)]

    http_json("POST", f"{e2e.sim.base_url}/_sim/tokens/expire")  # the next call gets 401: log in again
    seen = e2e.wait(
        lambda: logins(e2e),
        lambda found: len([s for s in found if s == (FORM, 200)]) >= 2,
        timeout=CONDITION_S,
        what="a second login",
    )
    assert [s for s in seen if s[0] == JSON] == [(JSON, 401)], "JSON is tried once per process, not per login"
