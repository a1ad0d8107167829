"""The simulator itself: configuration, persistence, admin endpoints, CLI, and the bridge's Node shape."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import API_TOKEN, CLIENT_ID, CLIENT_SECRET, base_url, make_client
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.cli import build_parser
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.bridge import MANAGED_BY_LABEL, Bridge, desired_nodes
from vpsie_autoscaler.cloudsim.cli import build_config
from vpsie_autoscaler.cloudsim.config import (
    DEFAULT_CLUSTER,
    ConfigError,
    SimConfig,
    SimGroup,
    SimProject,
    load_config,
)
from vpsie_autoscaler.cloudsim.faults import FaultKind
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.bootstrap import render_user_data
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.provider import Taint

BOOT = 5.0


# --- configuration ---------------------------------------------------------------------------------


def test_defaults_need_no_file() -> None:
    config = load_config(None)
    assert config.clusters[0].groups[0].name == "GRP-Advanced-c745"
    assert {p.nickname for p in config.plans} >= {"Starter", "Advanced"}


def test_yaml_overrides_and_typos_are_errors(tmp_path: Path) -> None:
    good = tmp_path / "sim.yaml"
    good.write_text("client_id: a\nclient_secret: b\nmode: strict\ndelays: {boot_seconds: 0.5}\n")
    config = load_config(good)
    assert (config.mode, config.delays.boot_seconds) == ("strict", 0.5)
    typo = tmp_path / "typo.yaml"
    typo.write_text("delays: {boot_secs: 1}\n")
    with pytest.raises(ConfigError, match="boot_secs"):
        load_config(typo)
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_group_with_an_unknown_size_is_refused() -> None:
    config = SimConfig()
    config.clusters[0].groups.append(SimGroup(name="bad", size=12345))
    with pytest.raises(ValueError, match="12345"):
        Simulator(config)


def cli_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["cloudsim", *argv])


def test_cli_flags_override_the_config_and_missing_credentials_are_generated(tmp_path: Path) -> None:
    config = build_config(cli_args("--boot-delay", "0.25", "--mode", "strict", "--token-ttl", "60"))
    assert (config.delays.boot_seconds, config.mode, config.token_ttl_seconds) == (0.25, "strict", 60)
    assert config.client_id
    assert config.client_secret
    assert config.api_tokens
    fixed = build_config(cli_args("--client-id", "me", "--client-secret", "pw", "--api-token", "tok"))
    assert (fixed.client_id, fixed.client_secret, fixed.api_tokens) == ("me", "pw", ["tok"])


def test_cli_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cloudsim", "--help"])
    out = capsys.readouterr().out
    for option in [
        "--host",
        "--port",
        "--client-id",
        "--client-secret",
        "--api-token",
        "--config",
        "--state-file",
        "--kubeconfig",
        "--boot-delay",
        "--pending-delay",
        "--delete-delay",
        "--mode",
        "--token-ttl",
        "--seed",
        "--fault",
        "--ready-file",
        "reply_lost",
        "late_reply",
        "lost_as",
        "/_sim/faults",
        "/_sim/groups/{id}/template",
    ]:
        assert option in out


def test_cli_reports_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vpsie_autoscaler.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    assert main(["cloudsim", "--config", str(bad)]) == 2
    assert "mapping" in capsys.readouterr().err


# --- persistence -----------------------------------------------------------------------------------


async def test_state_file_keeps_instances_across_a_restart(tmp_path: Path, sim_config: SimConfig) -> None:
    state_file = tmp_path / "state.json"
    clock = FakeClock()
    first = Simulator(sim_config, clock=clock, seed=1, state_file=state_file)
    server = TestServer(first.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with make_client(server, FakeClock()) as client:
            await client.create_vm(vm_request("asg-keep-1"))
            [group] = await client.list_node_groups(DEFAULT_CLUSTER)
            await client.add_node(DEFAULT_CLUSTER, group.id)
    finally:
        await server.close()
    await clock.advance(BOOT)
    second = Simulator(sim_config, clock=clock, seed=2, state_file=state_file)
    server = TestServer(second.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with make_client(server, FakeClock()) as client:
            assert [v.hostname for v in await client.list_vms()] == ["asg-keep-1"]
            workers = [n for n in (await client.get_k8s_cluster(DEFAULT_CLUSTER)).nodes if n.is_worker]
            assert len(workers) == 1
    finally:
        await server.close()


def test_a_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    with pytest.raises(ValueError, match="cannot load simulator state file"):
        Simulator(SimConfig(), state_file=state_file)


# --- admin and quirks ------------------------------------------------------------------------------


async def admin(server: TestServer, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, base_url(server) + path, json=json) as r:
        return r.status, await r.json()


async def test_admin_state_shows_groups_nodes_vms_and_templates(
    server: TestServer, client: VPSieClient, sim_clock: FakeClock
) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    template = {
        "labels": {"workload": "general"},
        "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}],
    }
    status, _ = await admin(server, "POST", f"/_sim/groups/{group.id}/template", template)
    assert status == 200
    await client.add_node(DEFAULT_CLUSTER, group.id)
    await client.create_vm(vm_request("asg-admin-1"))
    _, state = await admin(server, "GET", "/_sim/state")
    [cluster] = state["clusters"]
    assert cluster["groups"][0]["labels"] == {"workload": "general"}
    assert [n["phase"] for n in cluster["nodes"] if n["group_id"]] == ["provisioning"]
    assert [v["phase"] for v in state["vms"]] == ["pending"]
    assert state["logins"] == 1
    status, _ = await admin(server, "POST", "/_sim/groups/999/template", template)
    assert status == 404
    _, requests = await admin(server, "GET", "/_sim/requests")
    assert requests[0]["path"] == "/apps/v2/auth/from/api"


async def test_admin_can_expire_tokens(server: TestServer, client: VPSieClient, sim: Simulator) -> None:
    await client.list_datacenters()
    _, body = await admin(server, "POST", "/_sim/tokens/expire")
    assert body == {"expired": 1}
    await client.list_datacenters()
    assert sim.state.logins == 2


async def test_strict_login_refuses_a_form_body_and_lenient_accepts_it(server: TestServer, mode: str) -> None:
    form = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    async with (
        aiohttp.ClientSession() as s,
        s.post(base_url(server) + "/apps/v2/auth/from/api", data=form) as r,
    ):
        assert r.status == (400 if mode == "strict" else 200)


async def test_datacenter_paging_applies_only_with_offset_and_limit(server: TestServer) -> None:
    headers = {"Vpsie-Auth": API_TOKEN}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(base_url(server) + "/apps/v2/datacenter?offset=1&limit=1") as r:
            body = await r.json()
            assert (len(body["data"]), body["total"]) == (1, 2)
        async with s.get(base_url(server) + "/apps/v2/datacenter?offset=1") as r:
            assert len((await r.json())["data"]) == 2


# --- bridge: the Node each booted instance becomes -------------------------------------------------


class FakeNodes:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}

    async def list_names(self, label_selector: str) -> set[str]:
        key, _, value = label_selector.partition("=")
        return {n for n, b in self.nodes.items() if b["metadata"]["labels"].get(key) == value}

    async def create(self, body: dict[str, Any]) -> None:
        self.nodes[body["metadata"]["name"]] = body

    async def delete(self, name: str) -> None:
        self.nodes.pop(name, None)


async def test_booted_managed_node_becomes_a_node_with_plan_capacity_and_group_template(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    sim.state.set_group_template(group.id, {"workload": "general"}, [])
    sim.state.groups[group.id].taints = [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]
    fake = FakeNodes()
    bridge = Bridge(sim.state, fake, sim_clock)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    assert await bridge.sync() == ([], [])  # not booted yet
    await sim_clock.advance(BOOT)
    created, _ = await bridge.sync()
    [name] = created
    node = fake.nodes[name]
    assert name == name.lower()
    assert name.startswith("hel-kubernetes-49ab-slave-")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    labels = node["metadata"]["labels"]
    assert labels["workload"] == "general"
    assert labels["node.kubernetes.io/instance-type"] == "Advanced"
    assert labels[MANAGED_BY_LABEL] == "true"
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]
    assert node["status"]["capacity"] == {
        "cpu": "4",
        "memory": "8192Mi",
        "ephemeral-storage": "160Gi",
        "pods": "110",
    }
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    [instance] = [n for n in sim.state.nodes.values() if n.group_id]
    sim.state.delete_node(DEFAULT_CLUSTER, instance.identifier)
    await sim_clock.advance(2)
    assert await bridge.sync() == ([], [name])
    assert fake.nodes == {}


async def test_booted_vm_becomes_a_node_with_kubelet_flags_from_user_data(
    sim: Simulator, sim_clock: FakeClock
) -> None:
    user_data = render_user_data({"pool": "gpu"}, (Taint(key="gpu", effect="NoSchedule"),))
    body = vm_request("ASG-GPU-1").body("p") | {"userData": user_data}
    sim.state.create_vm(body)
    assert desired_nodes(sim.state) == {}
    await sim_clock.advance(BOOT)
    node = desired_nodes(sim.state)["asg-gpu-1"]
    assert node["metadata"]["labels"]["pool"] == "gpu"
    assert node["spec"]["taints"] == [{"key": "gpu", "effect": "NoSchedule"}]
    assert node["spec"]["providerID"].startswith("vpsie://")
    assert base64.b64decode(user_data).startswith(b"#!/bin/sh")


async def test_bridge_leaves_unmarked_nodes_alone(sim: Simulator, sim_clock: FakeClock) -> None:
    fake = FakeNodes()
    fake.nodes["real-node"] = {"metadata": {"name": "real-node", "labels": {}}}
    await Bridge(sim.state, fake, sim_clock).sync()
    assert "real-node" in fake.nodes


# --- VM tags and projects --------------------------------------------------------------------------


async def get_json(server: TestServer, path: str) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Vpsie-Auth": API_TOKEN}) as s,
        s.get(base_url(server) + path) as r,
    ):
        assert r.status == 200
        return await r.json()


async def test_get_vm_returns_the_create_tags_as_vm_tags(
    server: TestServer, client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    await client.create_vm(vm_request("asg-tagged-1", tags=("k8s", "asg-general")))
    await client.create_vm(vm_request("asg-tagged-2", tags=("asg-general",)))
    await client.create_vm(vm_request("asg-untagged-1"))
    await sim_clock.advance(BOOT)
    by_host = {v.hostname: v.identifier for v in sim.state.vms.values()}
    first = (await get_json(server, f"/apps/v2/vm/{by_host['asg-tagged-1']}"))["data"]
    second = (await get_json(server, f"/api/v2/vm/{by_host['asg-tagged-2']}"))["data"]
    untagged = (await get_json(server, f"/apps/v2/vm/{by_host['asg-untagged-1']}"))["data"]
    assert [t["name"] for t in first["vmTags"]] == ["k8s", "asg-general"]
    assert second["vmTags"] == [first["vmTags"][1]]  # one identifier per tag name
    assert first["vmTags"][0]["identifier"] != first["vmTags"][1]["identifier"]
    assert untagged["vmTags"] == []
    assert set(first) == {"vmData", "imageCategories", "vmTags", "privateIpData", "floatingIpData"}
    assert "tags" not in first["vmData"]  # VPSie's VM record has no tags (§4.5)
    assert (await client.get_vm(by_host["asg-tagged-1"])).hostname == "asg-tagged-1"


OTHER_PROJECT = SimProject(identifier="0c4d9e7a-1f2b-11ef-9c1a-0050569c68dc", id=413, name="Other")


async def test_vm_list_filters_by_project_id_or_identifier(
    sim_config: SimConfig, sim_clock: FakeClock
) -> None:
    sim_config.projects.append(OTHER_PROJECT)
    sim = Simulator(sim_config, clock=sim_clock, seed=3)
    sim.state.create_vm(vm_request("asg-default-1").body("p1"))
    sim.state.create_vm(vm_request("asg-other-1").body("p2") | {"projectId": OTHER_PROJECT.identifier})
    await sim_clock.advance(BOOT)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    try:
        default = sim_config.projects[0]

        async def hosts(query: str) -> list[str]:
            body = await get_json(server, "/apps/v2/vm" + query)
            assert body["total"] == len(body["data"])
            return [v["hostname"] for v in body["data"]]

        assert await hosts("") == ["asg-default-1", "asg-other-1"]
        assert await hosts(f"?projectId={default.id}") == ["asg-default-1"]
        assert await hosts(f"?projectId={OTHER_PROJECT.identifier}") == ["asg-other-1"]
        assert await hosts("?projectId=999") == []
        async with make_client(server, FakeClock()) as client:
            assert [v.hostname for v in await client.list_vms(OTHER_PROJECT.id)] == ["asg-other-1"]
    finally:
        await server.close()


# --- faults from the config file and the command line ----------------------------------------------


def test_new_fault_kinds_load_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "faults:\n"
        '  - {kind: reply_lost, method: POST, path: "/apps/v2/vm", lost_as: reset, times: 1}\n'
        '  - {kind: reply_lost, path: "*/reduce/slave", lost_as: 504}\n'
        '  - {kind: late_reply, path: "*/delete/slave", seconds: 30}\n'
    )
    faults = load_config(path).faults
    assert [(f.kind, f.lost_as) for f in faults] == [
        (FaultKind.REPLY_LOST, "reset"),
        (FaultKind.REPLY_LOST, "504"),
        (FaultKind.LATE_REPLY, "502"),
    ]
    assert faults[2].seconds == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [{kind: reply_lost, lost_as: teapot}]\n")
    with pytest.raises(ConfigError, match="lost_as"):
        load_config(bad)


def test_cli_fault_option_adds_faults_after_the_config_files(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("faults: [{kind: latency, seconds: 2}]\n")
    config = build_config(
        cli_args(
            "--config",
            str(path),
            "--fault",
            '{"kind": "reply_lost", "lost_as": "reset", "method": "POST", "path": "/apps/v2/vm"}',
            "--fault",
            "{kind: late_reply, path: '*/add/slave/group/*', seconds: 45}",
        )
    )
    assert [f.kind for f in config.faults] == [FaultKind.LATENCY, FaultKind.REPLY_LOST, FaultKind.LATE_REPLY]
    assert (config.faults[1].lost_as, config.faults[2].seconds) == ("reset", 45)
    sim = Simulator(config)
    assert [f.kind for f in sim.faults.all()] == [
        FaultKind.LATENCY,
        FaultKind.REPLY_LOST,
        FaultKind.LATE_REPLY,
    ]
    with pytest.raises(ConfigError, match="--fault"):
        build_config(cli_args("--fault", '{"kind": "reply_lost", "lost_as": "418"}'))
    with pytest.raises(ConfigError, match="--fault"):
        build_config(cli_args("--fault", "{kind: [unclosed"))


def test_cli_reports_a_bad_fault_option(capsys: pytest.CaptureFixture[str]) -> None:
    from vpsie_autoscaler.cli import main

    assert main(["cloudsim", "--fault", '{"kind": "bogus"}']) == 2
    assert "--fault" in capsys.readouterr().err
