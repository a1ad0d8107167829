"""``make demo``: watch vpsie-autoscaler add nodes for pending pods and remove them when idle.

Unattended, a minute or two once the control-plane tools are built. It starts, each in its own
process group and all on 127.0.0.1:

1. the local control plane (``hack/devcluster``; or uses ``--kubeconfig`` of a running one),
2. the VPSie simulator with its Kubernetes bridge (booted instances become kwok Nodes),
3. ``vpsie-autoscaler run`` pointed at both,

then applies NodeGroups (the chart's ``examples/nodegroup-managed.yaml`` when present, pointed at the
simulated cluster, else built-in ones) and a Deployment whose pods need three new nodes, prints
``kubectl get ng,vpsienodes,nodes`` each time the picture changes and the autoscaler's Events, shrinks
the Deployment to zero and watches the nodes go after ``unneededTime``. Whatever it started is
stopped and removed at the end, also on failure and on Ctrl-C.

``run_demo(kubeconfig, workdir, out)`` is the non-interactive core; ``tests/e2e/test_demo.py`` runs it
against the test cluster so the demo cannot silently rot.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import yaml

from hack.devcluster.client import ApiError, DevKubeClient
from hack.devcluster.cluster import DevCluster, find_binaries
from hack.stack.autoscaler import Autoscaler
from hack.stack.cloudsim import ADVANCED, HIGHMEM, CloudSim, VPSieGroup
from hack.stack.kube import NODEGROUPS, VPSIENODES, install_crds
from hack.stack.objects import deployment, nodegroup
from hack.stack.processes import wait_until

NAMESPACE: Final = "vpsie-demo"
WORKLOAD: Final = "demo-web"
REPLICAS: Final = 3
POD_CPU: Final = "3"  # one pod per 4-cpu node: three pods, three new nodes
EXAMPLE: Final = (
    Path(__file__).resolve().parent.parent / "charts/vpsie-autoscaler/examples/nodegroup-managed.yaml"
)
KUBECTL_CANDIDATES: Final = ("kubectl", "/usr/bin/kubectl")
SCALE_UP_S: Final = 120.0
SCALE_DOWN_S: Final = 120.0
CLEANUP_S: Final = 60.0
WATCH_INTERVAL_S: Final = 1.0
NAMESPACE_READY_S: Final = 30.0
# Short timers so the whole story fits in a couple of minutes (production defaults are 10m).
DEMO_UNNEEDED: Final = "10s"
DEMO_DELAY_AFTER_SCALE_UP: Final = "5s"
AGE: Final = re.compile(r"(?<!\S)(\d+[smhd])+(?!\S)")
OUR_REASONS: Final = frozenset(
    {
        "TriggeredScaleUp",
        "NotTriggerScaleUp",
        "ScaledUp",
        "ScaleUpFailed",
        "ScaleDown",
        "ScaledDown",
        "ScaleDownBlocked",
        "DrainFailed",
    }
)


class Interrupted(Exception):
    """SIGINT/SIGTERM: leave through the cleanup path."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _kubectl() -> str | None:
    for candidate in KUBECTL_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def demo_nodegroups() -> list[dict[str, Any]]:
    """The chart's managed example (when the chart is present) plus a fallback pool, on the simulator."""
    general = nodegroup(
        "general",
        ADVANCED,
        min_nodes=0,
        max_nodes=5,
        priority=10,
        unneeded_time=DEMO_UNNEEDED,
        delay_after_scale_up=DEMO_DELAY_AFTER_SCALE_UP,
    )
    if EXAMPLE.exists():
        example = yaml.safe_load(EXAMPLE.read_text())
        spec = example["spec"]
        spec["minNodes"] = 0
        spec["managed"] = general["spec"]["managed"]  # the example's cluster is a placeholder
        spec.setdefault("scaleDown", {}).update(general["spec"]["scaleDown"])
        general = example
    highmem = nodegroup(
        "highmem",
        HIGHMEM,
        min_nodes=0,
        max_nodes=3,
        priority=0,
        unneeded_time=DEMO_UNNEEDED,
        delay_after_scale_up=DEMO_DELAY_AFTER_SCALE_UP,
    )
    return [general, highmem]


class Demo:
    """The story, step by step, printed to ``out``."""

    def __init__(
        self, kubeconfig: Path, workdir: Path, out: TextIO, *, sim_groups: tuple[VPSieGroup, ...]
    ) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.out = out
        self.client = DevKubeClient.from_kubeconfig(kubeconfig)
        self.kubectl = _kubectl()
        self.sim = CloudSim(workdir, kubeconfig, groups=sim_groups)
        self.scaler: Autoscaler | None = None
        self.nodegroups: list[str] = []
        self.last_view = ""
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        print(f"\n==> {text}", file=self.out, flush=True)

    # --- the story ---------------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        began = time.monotonic()
        self.say("installing the CRDs (vpsie-autoscaler crds)")
        install_crds(self.client)
        self.say("starting the VPSie simulator with its Kubernetes bridge")
        self.sim.start()
        self.say(f"simulator on {self.sim.base_url}; starting vpsie-autoscaler run")
        self.scaler = Autoscaler(
            workdir=self.workdir,
            name="autoscaler",
            kubeconfig=self.kubeconfig,
            sim=self.sim,
            namespace=NAMESPACE,
            lease_id="vpsie-autoscaler-demo",
        )
        self._namespace()
        self.scaler.start()
        self.scaler.wait_ready()
        self.scaler.wait_leader()
        self.say(f"autoscaler leading; metrics on {self.scaler.metrics_url}")

        for body in demo_nodegroups():
            self.client.create(NODEGROUPS, body)
            self.nodegroups.append(body["metadata"]["name"])
        self.say(f"applied NodeGroups {', '.join(self.nodegroups)}")
        self.show(force=True)

        self.say(f"deploying {WORKLOAD}: {REPLICAS} pods of {POD_CPU} cpu each; no node can hold them yet")
        start = time.monotonic()
        self.client.create(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
            deployment(WORKLOAD, REPLICAS, cpu=POD_CPU, memory="1Gi"),
        )
        self.watch(lambda: len(self.running_pods()) == REPLICAS, SCALE_UP_S, "pods Running on new nodes")
        self.timings["scale_up_s"] = time.monotonic() - start
        self.say(f"scale-up done in {self.timings['scale_up_s']:.1f}s")
        self.events()

        self.say(
            f"scaling {WORKLOAD} to 0: the nodes become unneeded and go after unneededTime={DEMO_UNNEEDED}"
        )
        start = time.monotonic()
        self.client.merge_patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{WORKLOAD}", {"spec": {"replicas": 0}}
        )
        self.watch(lambda: not self.client.list_objects(VPSIENODES), SCALE_DOWN_S, "every node removed")
        self.timings["scale_down_s"] = time.monotonic() - start
        self.say(f"scale-down done in {self.timings['scale_down_s']:.1f}s")
        self.events()
        self.timings["total_s"] = time.monotonic() - began
        return self.timings

    def _namespace(self) -> None:
        with contextlib.suppress(ApiError):
            self.client.create_namespace(NAMESPACE)
        self.client.wait_for(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default",
            lambda sa: sa is not None,
            timeout=NAMESPACE_READY_S,
            what="namespace ready",
        )

    def running_pods(self) -> list[dict[str, Any]]:
        pods = self.client.list_objects(
            f"/api/v1/namespaces/{NAMESPACE}/pods", label_selector=f"app={WORKLOAD}"
        )
        return [p for p in pods if p.get("status", {}).get("phase") == "Running"]

    def watch(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Print the picture whenever it changes, until ``done()``; fail with the logs after ``timeout``."""
        assert self.scaler is not None

        def step() -> bool:
            self.show()
            return done()

        try:
            wait_until(
                step,
                bool,
                timeout=timeout,
                what=what,
                alive=[self.sim.process, self.scaler.proc],
                interval=WATCH_INTERVAL_S,
            )
        finally:
            self.show(force=True)

    def view(self) -> str:
        if self.kubectl:
            cmd = [
                self.kubectl,
                "--kubeconfig",
                str(self.kubeconfig),
                "get",
                "ng,vpsienodes,nodes",
                "-o",
                "wide",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            return done.stdout + done.stderr
        return self._table()

    def _table(self) -> str:
        """The same picture without kubectl (fewer columns)."""
        lines = ["NODEGROUP            MIN MAX DESIRED CURRENT READY"]
        for ng in self.client.list_objects(NODEGROUPS):
            s, st = ng["spec"], ng.get("status", {})
            lines.append(
                f"{ng['metadata']['name']:<20} {s['minNodes']:>3} {s['maxNodes']:>3} "
                f"{st.get('desiredNodes', 0):>7} {st.get('currentNodes', 0):>7} {st.get('readyNodes', 0):>5}"
            )
        lines.append("VPSIENODE                      PHASE        NODE")
        for vn in self.client.list_objects(VPSIENODES):
            st = vn.get("status", {})
            lines.append(
                f"{vn['metadata']['name']:<30} {st.get('phase') or '-':<12} {st.get('nodeName') or '-'}"
            )
        lines.append("NODE")
        lines += [n["metadata"]["name"] for n in self.client.list_objects("/api/v1/nodes")]
        return "\n".join(lines)

    def show(self, *, force: bool = False) -> None:
        view = self.view()
        # AGE columns change every second: compare the picture without ages ("45s", "2m3s").
        key = AGE.sub("", view)
        if force or key != self.last_view:
            self.last_view = key
            print(f"\n$ kubectl get ng,vpsienodes,nodes   [{time.strftime('%H:%M:%S')}]", file=self.out)
            print(view.rstrip(), file=self.out, flush=True)

    def events(self) -> None:
        rows = []
        for ns in (NAMESPACE, "default"):
            for ev in self.client.list_objects(f"/apis/events.k8s.io/v1/namespaces/{ns}/events"):
                if (
                    ev.get("reportingController", "").startswith("vpsie-autoscaler")
                    or ev.get("reason") in OUR_REASONS
                ):
                    ref = ev.get("regarding", {})
                    when = ev.get("eventTime") or ev["metadata"].get("creationTimestamp") or ""
                    rows.append(
                        f"{when}  {ev.get('type'):<7} {ev.get('reason'):<18} "
                        f"{ref.get('kind')}/{ref.get('name')}: {ev.get('note')}"
                    )
        print("\nEvents from vpsie-autoscaler:", file=self.out)
        for row in sorted(rows):
            print("  " + row, file=self.out)
        self.out.flush()

    # --- cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove what the demo created, letting the autoscaler delete its instances first."""
        with contextlib.suppress(Exception):
            self.client.delete(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{WORKLOAD}")
        for name in self.nodegroups:
            with contextlib.suppress(Exception):
                self.client.delete(f"{NODEGROUPS}/{name}")
        if self.scaler is not None and self.scaler.process is not None and self.scaler.process.alive():
            with contextlib.suppress(Exception):
                wait_until(
                    lambda: self.client.list_objects(VPSIENODES) + self.client.list_objects(NODEGROUPS),
                    lambda left: not left,
                    timeout=CLEANUP_S,
                    what="NodeGroups and VPSieNodes gone",
                )
        if self.scaler is not None:
            self.scaler.stop()
        for path in (VPSIENODES, NODEGROUPS):  # anything the autoscaler could not finish
            with contextlib.suppress(Exception):
                for obj in self.client.list_objects(path):
                    url = f"{path}/{obj['metadata']['name']}"
                    self.client.merge_patch(url, {"metadata": {"finalizers": None}})
                    self.client.delete(url)
        self.sim.stop()
        with contextlib.suppress(Exception):
            self.client.delete_nodes("cloudsim.vpsie.com/managed=true")
        with contextlib.suppress(Exception):
            self.client.delete_namespace(NAMESPACE)


def run_demo(kubeconfig: Path, workdir: Path, out: TextIO) -> dict[str, float]:
    """The demo against a running cluster; everything it created is removed before it returns."""
    demo = Demo(kubeconfig, workdir, out, sim_groups=(ADVANCED, HIGHMEM))
    try:
        return demo.run()
    except BaseException:
        if demo.scaler is not None:
            print(f"\n--- autoscaler log tail ({demo.scaler.proc.log}):\n{demo.scaler.proc.tail()}", file=out)
        print(f"\n--- simulator log tail:\n{demo.sim.process.tail(20)}", file=out)
        raise
    finally:
        demo.cleanup()


@contextlib.contextmanager
def _cluster(kubeconfig: Path | None, workdir: Path, out: TextIO) -> Iterator[Path]:
    if kubeconfig is not None:
        yield kubeconfig
        return
    bin_dir = find_binaries()
    if bin_dir is None:
        raise SystemExit("the local control plane is not built: run `make devcluster-build`")
    print(
        "==> starting the local control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok)",
        file=out,
        flush=True,
    )
    cluster = DevCluster(bin_dir, workdir / "cluster")
    handle = cluster.start()
    try:
        yield handle.kubeconfig
    finally:
        print("\n==> stopping the local control plane", file=out, flush=True)
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--kubeconfig", type=Path, help="use this running cluster instead of starting one")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the logs directory after the demo")
    args = parser.parse_args(argv)
    out = sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="vpsie-demo-"))
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    began = time.monotonic()
    code = 0
    try:
        with _cluster(args.kubeconfig, workdir, out) as kubeconfig:
            timings = run_demo(kubeconfig, workdir, out)
        summary = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        print(f"\n==> demo finished in {time.monotonic() - began:.1f}s ({summary})", file=out)
    except Interrupted as exc:
        print(f"\n==> interrupted ({exc}); everything started was stopped", file=out)
        code = 130
    except Exception as exc:
        print(f"\n==> demo failed: {exc}\n    logs: {workdir}", file=out)
        args.keep_workdir = True
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
