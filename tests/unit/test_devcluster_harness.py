"""The local-cluster harness itself: certificates, the JSON client, node bodies, process handling.

These run without the control-plane binaries, so a harness bug shows up in seconds rather than as
a confusing failure of every integration test.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from hack.devcluster import cli, pki
from hack.devcluster.build import build_once
from hack.devcluster.client import ApiError, DevKubeClient, WaitTimeout
from hack.devcluster.cluster import Component, ComponentDied, ComponentNotReady, DevCluster, free_port
from hack.devcluster.nodes import KWOK_ANNOTATION, make_kwok_node
from hack.devcluster.processes import ProcessRecord

# --- a tiny HTTPS API server that demands client certificates or tokens, like kube-apiserver ----


@dataclass
class Seen:
    peer_subjects: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def api(certs: pki.Pki) -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            cert = self.connection.getpeercert()
            if cert:
                seen.peer_subjects.append(repr(cert["subject"]))
            seen.auth_headers.append(self.headers.get("Authorization"))
            if self.path == "/version":
                self._reply(200, {"gitVersion": "v1.36.3"})
            else:
                self._reply(422, {"kind": "Status", "reason": "Invalid", "message": "replicas is invalid"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.apiserver_cert, certs.apiserver_key)
    ctx.load_verify_locations(certs.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # like kube-apiserver: certificate or bearer token
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_admin_kubeconfig_authenticates_with_a_system_masters_certificate_over_verified_tls(
    certs: pki.Pki, api: tuple[str, Seen], tmp_path: Path
) -> None:
    url, seen = api
    kubeconfig = pki.write_admin_kubeconfig(tmp_path / "kubeconfig", url, certs)
    client = DevKubeClient.from_kubeconfig(kubeconfig)
    assert client.version() == {"gitVersion": "v1.36.3"}
    assert pki.ADMIN_GROUP in seen.peer_subjects[-1]
    assert pki.ADMIN_USER in seen.peer_subjects[-1]
    assert kubeconfig.stat().st_mode & 0o077 == 0  # holds a private key


def test_token_kubeconfig_sends_the_bearer_token(
    certs: pki.Pki, api: tuple[str, Seen], tmp_path: Path
) -> None:
    url, seen = api
    path = pki.write_token_kubeconfig(tmp_path / "sa", url, certs.ca_cert.read_bytes(), "sa", "tok3n")
    DevKubeClient.from_kubeconfig(path).version()
    assert seen.auth_headers[-1] == "Bearer tok3n"


def test_client_refuses_a_server_signed_by_another_ca(api: tuple[str, Seen], tmp_path: Path) -> None:
    url, _ = api
    other = pki.generate(tmp_path / "other")
    client = DevKubeClient(url, other.ca_cert.read_bytes(), token="x")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.version()


def test_api_errors_carry_status_reason_and_message(certs: pki.Pki, api: tuple[str, Seen]) -> None:
    url, _ = api
    client = DevKubeClient(url, certs.ca_cert.read_bytes(), token="x")
    with pytest.raises(ApiError) as err:
        client.get("/apis/x")
    assert (err.value.status, err.value.reason, err.value.message) == (422, "Invalid", "replicas is invalid")


def test_certificates_chain_to_the_ca_with_the_sans_clients_dial(certs: pki.Pki) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(certs.apiserver_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(certs.admin_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == list(pki.APISERVER_IP_SANS)
    org = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == "system:masters"
    assert certs.sa_key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("kubeconfig", "error"),
    [
        ("[]", "not a kubeconfig"),
        (
            json.dumps(
                {
                    "current-context": "c",
                    "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                    "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                }
            ),
            "no certificate-authority",
        ),
        (json.dumps({"current-context": "nope", "contexts": []}), "current-context 'nope' not found"),
    ],
)
def test_bad_kubeconfigs_are_rejected_clearly(kubeconfig: str, error: str, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig)
    with pytest.raises(ValueError, match=error):
        DevKubeClient.from_kubeconfig(path)


def test_client_needs_https_and_credentials(certs: pki.Pki) -> None:
    ca = certs.ca_cert.read_bytes()
    with pytest.raises(ValueError, match="https"):
        DevKubeClient("http://127.0.0.1:6443", ca, token="t")
    with pytest.raises(ValueError, match="token or a client certificate"):
        DevKubeClient("https://127.0.0.1:6443", ca)


def test_a_dead_component_ends_a_wait_at_once(certs: pki.Pki) -> None:
    def liveness() -> None:
        raise ComponentDied("kube-apiserver exited with code 1; last lines: panic")

    client = DevKubeClient("https://127.0.0.1:1", certs.ca_cert.read_bytes(), token="t", liveness=liveness)
    with pytest.raises(ComponentDied, match="panic"):
        client.wait_until(lambda: None, lambda _: False, timeout=600, what="never")


def test_a_wait_past_its_deadline_names_what_it_waited_for(certs: pki.Pki) -> None:
    client = DevKubeClient("https://127.0.0.1:1", certs.ca_cert.read_bytes(), token="t")
    with pytest.raises(WaitTimeout, match=r"waiting for the thing; last seen: \{\"phase\": \"Pending\"\}"):
        client.wait_until(lambda: {"phase": "Pending"}, lambda _: False, timeout=0.3, what="the thing")


def test_delete_nodes_refuses_an_empty_selector(certs: pki.Pki) -> None:
    client = DevKubeClient("https://127.0.0.1:1", certs.ca_cert.read_bytes(), token="t")
    with pytest.raises(ValueError, match="every node"):
        client.delete_nodes("")


# --- kwok node bodies --------------------------------------------------------------------------------


def test_kwok_node_carries_the_annotation_resources_labels_and_taints() -> None:
    node = make_kwok_node(
        "vm-1",
        cpu="4",
        memory="8Gi",
        pods="32",
        labels={"node.kubernetes.io/instance-type": "small", "type": "vpsie"},
        taints=[{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}],
    )
    assert node["metadata"]["annotations"] == {KWOK_ANNOTATION: "fake"}
    assert node["status"]["capacity"] == node["status"]["allocatable"]
    assert node["status"]["capacity"]["cpu"] == "4"
    assert node["status"]["capacity"]["pods"] == "32"
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "vm-1"
    assert labels["type"] == "vpsie"  # caller labels win over defaults
    assert node["spec"] == {
        "providerID": "kwok://vm-1",
        "taints": [{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}],
    }


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "Bad_Name"}, "RFC 1123"),
        ({"name": ""}, "RFC 1123"),
        ({"cpu": "two"}, "cpu='two' is not a Kubernetes quantity"),
        ({"memory": "4GB"}, "memory='4GB'"),
        ({"pods": "-1"}, "pods='-1'"),
        ({"taints": [{"key": "k", "effect": "Sometimes"}]}, "effect in"),
        ({"taints": [{"effect": "NoSchedule"}]}, "needs a key"),
    ],
)
def test_malformed_kwok_nodes_fail_before_reaching_the_api(kwargs: dict[str, Any], error: str) -> None:
    args: dict[str, Any] = {"name": "vm-1", "cpu": "2", "memory": "4Gi"} | kwargs
    with pytest.raises(ValueError, match=error):
        make_kwok_node(**args)


# --- processes -----------------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_component_that_crashes_fails_readiness_with_its_exit_code_and_log_tail(tmp_path: Path) -> None:
    comp = Component(
        "etcd",
        _python("print('flag provided but not defined: -bogus', flush=True); raise SystemExit(3)"),
        tmp_path / "etcd.log",
        probe=lambda: False,
    )
    comp.start()
    with pytest.raises(ComponentDied) as died:
        comp.wait_ready(timeout=600)  # must not wait for the deadline
    assert "etcd exited with code 3" in str(died.value)
    assert "flag provided but not defined: -bogus" in str(died.value)


def test_a_component_that_never_becomes_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    comp = Component(
        "kwok",
        _python("import time; print('waiting for apiserver', flush=True); time.sleep(600)"),
        tmp_path / "kwok.log",
        probe=lambda: False,
    )
    comp.start()
    try:
        with pytest.raises(ComponentNotReady, match="waiting for apiserver"):
            comp.wait_ready(timeout=1.0)
    finally:
        comp.stop(grace=5)
    assert comp.proc is not None
    assert comp.proc.returncode is not None


def test_a_recorded_process_is_stopped_only_while_the_pid_still_runs_the_recorded_binary(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(_python("import time; time.sleep(600)"), start_new_session=True)
    try:
        record = ProcessRecord.of("etcd", proc, tmp_path / "etcd.log")
        assert record.is_running()
        reused = ProcessRecord.from_json(record.to_json() | {"argv0": "/usr/bin/some-other-program"})
        assert not reused.is_running()
        assert reused.stop() is False
        assert proc.poll() is None  # the stranger was left alone
        restarted = ProcessRecord.from_json(record.to_json() | {"start_ticks": record.start_ticks + 1})
        assert restarted.stop() is False
        assert record.stop(grace=5) is True
        assert proc.wait(timeout=5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_free_ports_are_distinct_and_honour_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {free_port("x") for _ in range(20)}
    assert len(ports) == 20
    monkeypatch.setenv("DEVCLUSTER_PORT_KUBE_APISERVER", "16443")
    assert free_port("kube-apiserver") == 16443


def test_starting_without_binaries_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "etcd").touch()
    with pytest.raises(FileNotFoundError, match=r"kube-apiserver, .*helm; run make devcluster-build"):
        DevCluster(tmp_path, tmp_path / "run").start()


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_up_without_binaries_says_how_to_build_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "find_binaries", lambda: None)
    assert cli.main(["up", "--dir", str(tmp_path)]) == 1
    assert "make devcluster-build" in capsys.readouterr().err


def test_cli_down_and_status_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down", "--dir", str(tmp_path)]) == 0
    assert cli.main(["status", "--dir", str(tmp_path)]) == 1
    assert "not running" in capsys.readouterr().out


def test_cli_down_stops_recorded_processes_and_forgets_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.Popen(_python("import time; time.sleep(600)"), start_new_session=True)
    try:
        record = ProcessRecord.of("kwok", proc, tmp_path / "kwok.log")
        (tmp_path / cli.STATE_FILE).write_text(json.dumps({"api_url": "x", "processes": [record.to_json()]}))
        assert cli.main(["down", "--dir", str(tmp_path)]) == 0
        assert proc.wait(timeout=15) is not None
        assert not (tmp_path / cli.STATE_FILE).exists()
        assert "stopped: kwok" in capsys.readouterr().out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the fixture's contract: CI never silently skips the cluster tests ---------------------------------

REPO = Path(__file__).resolve().parents[2]
A_CLUSTER_TEST = "tests/integration/test_devcluster.py::test_api_server_reports_the_pinned_kubernetes_version"


def _run_cluster_test_without_binaries(
    tmp_path: Path, require: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REQUIRE_DEVCLUSTER", "DEVCLUSTER_"))}
    env["DEVCLUSTER_BIN_DIR"] = str(tmp_path)  # an empty directory: no binaries
    if require is not None:
        env["REQUIRE_DEVCLUSTER"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", A_CLUSTER_TEST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_binaries_fail_the_cluster_tests_when_the_cluster_is_required(tmp_path: Path) -> None:
    res = _run_cluster_test_without_binaries(tmp_path, "1")
    assert res.returncode == 1, res.stdout
    assert "1 error" in res.stdout
    assert "REQUIRE_DEVCLUSTER=1: a missing cluster is a failure" in res.stdout


def test_missing_binaries_skip_the_cluster_tests_otherwise(tmp_path: Path) -> None:
    res = _run_cluster_test_without_binaries(tmp_path, None)
    assert res.returncode == 0, res.stdout
    assert "1 skipped" in res.stdout


def test_a_tool_is_built_once_and_a_failed_build_leaves_nothing_at_the_final_path(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build_into(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "tool").write_text("1")

    target = tmp_path / "cache" / "tool-abc"
    assert build_once(target, build_into) == target
    assert (target / "tool").exists()
    assert (target / ".complete").exists()
    build_once(target, build_into)
    assert len(calls) == 1

    def failing(tmp: Path) -> None:
        (tmp / "half").write_text("")
        raise RuntimeError("compile error")

    broken = tmp_path / "cache" / "tool-def"
    with pytest.raises(RuntimeError):
        build_once(broken, failing)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tool-abc"]
