"""The full versions of chaos scenarios 3 (Kubernetes API faults) and 4 (VPSie credentials), and
scenario 6 (load: 1 000 Nodes, 30 000 pods, 500 pending pods in 10 s). Skipped unless CHAOS_FULL=1:

    CHAOS_FULL=1 REQUIRE_DEVCLUSTER=1 .venv/bin/python -m pytest tests/chaos/test_chaos_more_full.py -s

CHAOS_KUBE_ROUNDS (default 3) rounds of scenario 3's faults, each with CHAOS_KUBE_CUT_S (120) s of
connection cuts; CHAOS_ROTATIONS (default 6) token rotations in scenario 4; CHAOS_LEASE as for
``make chaos``. docs/reliability.md has the scenarios, checks and results."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hack.devcluster.cluster import ClusterHandle
from tests.chaos.harness import ChaosConfig, run_on
from tests.chaos.scenario_credentials import (
    TOKENS,
    WRONG_TOKEN,
    CredentialsScenario,
    credentials_stack,
    restart_sim_with_tokens,
    write_token,
)
from tests.chaos.scenario_kube_faults import (
    KubeFaultsScenario,
    ProxyThread,
    apiserver_of,
    kube_faults_stack,
)
from tests.chaos.scenario_load import Background, LoadScenario, load_stack
from tests.e2e.harness import E2E

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("CHAOS_FULL") != "1", reason="the full chaos run: CHAOS_FULL=1"),
]

CONFIG = ChaosConfig.from_env("full")
HOURS = 3600
ROUNDS = int(os.environ.get("CHAOS_KUBE_ROUNDS", "3"))
CUT_S = float(os.environ.get("CHAOS_KUBE_CUT_S", "120"))
ROTATIONS = int(os.environ.get("CHAOS_ROTATIONS", "6"))


@pytest.fixture
def kube_proxy_thread(e2e: E2E) -> Iterator[ProxyThread]:
    proxy = ProxyThread(e2e.kubeconfig, e2e.workdir).start()
    try:
        yield proxy
    finally:
        for scaler in e2e.autoscalers:
            scaler.stop()
        proxy.stop()


@pytest.mark.timeout(1 * HOURS)
def test_kube_api_faults(e2e: E2E, k8s_cluster: ClusterHandle, kube_proxy_thread: ProxyThread) -> None:
    scenario = KubeFaultsScenario(
        CONFIG, kube_proxy_thread, apiserver_of(k8s_cluster), cut_s=CUT_S, rounds=ROUNDS
    )
    stack = kube_faults_stack(e2e, CONFIG, kube_proxy_thread, scenario.name)
    off = run_on(stack, scenario)
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)


@pytest.mark.timeout(1 * HOURS)
def test_credentials(e2e: E2E) -> None:
    restart_sim_with_tokens(e2e, TOKENS)
    directory = e2e.workdir / "vpsie-credentials"
    write_token(directory, WRONG_TOKEN)
    scenario = CredentialsScenario(CONFIG, directory, rotate_churn_s=30.0, rotations=ROTATIONS)
    stack = credentials_stack(e2e, CONFIG, directory, scenario.name)
    off = run_on(stack, scenario)
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)


@pytest.mark.timeout(1 * HOURS)
def test_load(e2e: E2E) -> None:
    background = Background(e2e)
    try:
        background.populate()
        scenario = LoadScenario(CONFIG, background)
        off = run_on(load_stack(e2e, CONFIG, scenario.name), scenario)
    finally:
        background.remove()
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)
