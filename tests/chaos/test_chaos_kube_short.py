"""The short versions of chaos scenarios 3 (Kubernetes API faults) and 4 (VPSie credentials), in
``make test``: about 4 minutes together on two cores. ``test_chaos_more_full.py`` has the full ones.
CHAOS_SEED replays a run; docs/reliability.md has the scenarios, checks and results."""

from __future__ import annotations

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
from tests.e2e.harness import E2E

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

CONFIG = ChaosConfig.from_env("short")


@pytest.fixture
def kube_proxy_thread(e2e: E2E) -> Iterator[ProxyThread]:
    proxy = ProxyThread(e2e.kubeconfig, e2e.workdir).start()
    try:
        yield proxy
    finally:
        for scaler in e2e.autoscalers:  # they must not outlive their apiserver connection's proxy
            scaler.stop()
        proxy.stop()


@pytest.mark.timeout(600)  # a hang guard, not a speed claim: 2 loaded cores run it in 100-220 s
def test_kube_api_faults(e2e: E2E, k8s_cluster: ClusterHandle, kube_proxy_thread: ProxyThread) -> None:
    """Scenario 3: connections cut every 10 s for 30 s, an apiserver restart during a scale-up, a 410
    on every watch; converged within 30 s of each, no duplicate, no orphan."""
    scenario = KubeFaultsScenario(CONFIG, kube_proxy_thread, apiserver_of(k8s_cluster), cut_s=30.0)
    stack = kube_faults_stack(e2e, CONFIG, kube_proxy_thread, scenario.name)
    off = run_on(stack, scenario)
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)


@pytest.mark.timeout(450)  # a hang guard, not a speed claim
def test_credentials(e2e: E2E) -> None:
    """Scenario 4: a wrong token at start, fixed without a restart, then rotated under churn."""
    restart_sim_with_tokens(e2e, TOKENS)
    directory = e2e.workdir / "vpsie-credentials"
    write_token(directory, WRONG_TOKEN)
    scenario = CredentialsScenario(CONFIG, directory, rotate_churn_s=16.0)
    stack = credentials_stack(e2e, CONFIG, directory, scenario.name)
    off = run_on(stack, scenario)
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)
