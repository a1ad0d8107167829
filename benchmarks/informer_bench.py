"""Informer benchmark: 1000 Nodes and 30 000 Pods on the local control plane.

Prints, for one process running the runtime's shared informers for Nodes and Pods (all namespaces):
peak RSS, time from start to synced, steady CPU over an idle window, and raw-JSON vs typed-model
decode time for a pod list. Targets: <= 200 MiB RSS, <= 5 s to synced, <= 0.05 core steady.

Run: ``make bench`` or ``.venv/bin/python -m benchmarks.informer_bench [--nodes N] [--pods N]``.
It starts its own control plane (needs ``make devcluster-build``) unless ``DEVCLUSTER_KUBECONFIG``
points at a running one, creates the objects, measures in a fresh child process (so RSS is the
informer process only), then deletes what it created (or stops its cluster). Bounded by --deadline.

The Nodes are plain Node objects (no kwok) and the Pods are bound with ``spec.nodeName`` and
tolerate everything: nothing changes them afterwards (no kubelet, no kwok pod stages, no taint
eviction), so creating 31 000 objects on 2 cores takes about a minute and the idle window is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_NODES = 1000
DEFAULT_PODS = 30_000
CREATE_CONCURRENCY = 48
STEADY_SECONDS = 30.0
DECODE_SAMPLE_PODS = 2000
DEADLINE_SECONDS = 20 * 60.0
NAMESPACE = "bench-informers"
NODE_LABEL = "bench.vpsie.com/informers"
SYNC_TIMEOUT_SECONDS = 300.0
NAMESPACE_WAIT_POLLS = 300
LEAN_STEADY_SECONDS = 5.0
CLEANUP_ATTEMPTS = 10
MIB = 1024 * 1024


def node_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f"bench-node-{i:04d}",
            "labels": {
                NODE_LABEL: "true",
                "kubernetes.io/hostname": f"bench-node-{i:04d}",
                "node.kubernetes.io/instance-type": "vpsie-4c8g",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "spec": {"providerID": f"vpsie://bench-{i:04d}"},
    }


def pod_body(i: int, nodes: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"bench-pod-{i:05d}", "labels": {"app": f"app-{i % 50}", "tier": "web"}},
        "spec": {
            "nodeName": f"bench-node-{i % nodes:04d}",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "app",
                    "image": f"registry.example/app-{i % 50}:1.0",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


# -- the measured child process -------------------------------------------------------------------


async def measure(
    kubeconfig: str,
    steady_seconds: float,
    lean: bool = False,
    list_mode: str = "paginated",
    page_size: int = 500,
) -> dict[str, Any]:
    started = time.monotonic()
    from vpsie_autoscaler.controllers.podcache import trim_pod  # noqa: PLC0415
    from vpsie_autoscaler.kube import KubeClient  # noqa: PLC0415 - import time is part of the start
    from vpsie_autoscaler.kube.resources import NODES, PODS  # noqa: PLC0415
    from vpsie_autoscaler.runtime.informer import InformerFactory  # noqa: PLC0415
    from vpsie_autoscaler.runtime.reflector import ListMode  # noqa: PLC0415

    imported = time.monotonic()
    async with await KubeClient.connect(kubeconfig) as client:
        factory = InformerFactory(client, list_mode=ListMode(list_mode), page_size=page_size)
        nodes = factory.informer_for(NODES)
        pods = factory.informer_for(PODS, transform=trim_pod if lean else None)
        factory.start()
        if not await factory.wait_for_cache_sync(SYNC_TIMEOUT_SECONDS):
            raise SystemExit("informers did not sync")
        synced = time.monotonic()
        rss_synced = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(steady_seconds)  # the idle window being measured
        cpu1, wall1 = time.process_time(), time.monotonic()
        result = {
            "nodes": len(nodes.store),
            "pods": len(pods.store),
            "import_s": imported - started,
            "start_to_synced_s": synced - started,
            "list_and_sync_s": synced - imported,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
            "rss_at_sync_mib": rss_synced / MIB,
            "steady_cpu_cores": (cpu1 - cpu0) / (wall1 - wall0),
            "steady_window_s": wall1 - wall0,
        }
        await factory.stop()
        return result


# -- the orchestrator -----------------------------------------------------------------------------


async def populate(kubeconfig: str, nodes: int, pods: int) -> float:
    from vpsie_autoscaler.kube import KubeClient, errors  # noqa: PLC0415
    from vpsie_autoscaler.kube.resources import NAMESPACES, NODES, PODS, SERVICEACCOUNTS  # noqa: PLC0415

    began = time.monotonic()
    async with await KubeClient.connect(kubeconfig) as client:
        for _ in range(NAMESPACE_WAIT_POLLS):  # a namespace left terminating by a previous run
            try:
                ns = await client.get(NAMESPACES, NAMESPACE)
            except errors.NotFound:
                break
            if not ns["metadata"].get("deletionTimestamp"):
                break
            await asyncio.sleep(1.0)
        with contextlib.suppress(errors.AlreadyExists):
            await client.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            )
        for _ in range(300):  # pods are refused until the ServiceAccount controller made "default"
            try:
                await client.get(SERVICEACCOUNTS, "default", NAMESPACE)
                break
            except errors.NotFound:
                await asyncio.sleep(0.1)
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(res: Any, body: dict[str, Any], ns: str | None) -> None:
            async with gate:
                for attempt in range(5):
                    try:
                        await client.create(res, body, ns)
                        return
                    except errors.AlreadyExists:
                        return
                    except errors.KubeError:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(create(NODES, node_body(i), None) for i in range(nodes)))
        await asyncio.gather(*(create(PODS, pod_body(i, nodes), NAMESPACE) for i in range(pods)))
    return time.monotonic() - began


async def decode_comparison(kubeconfig: str, sample: int) -> dict[str, Any]:
    import orjson  # noqa: PLC0415
    from kubernetes_asyncio.client import ApiClient  # noqa: PLC0415

    from vpsie_autoscaler.kube import KubeClient  # noqa: PLC0415
    from vpsie_autoscaler.kube.resources import PODS  # noqa: PLC0415

    async with await KubeClient.connect(kubeconfig) as client:
        page = await client.list(PODS, NAMESPACE, limit=sample)
    raw = orjson.dumps(page)

    class _Response:
        def __init__(self, data: bytes) -> None:
            self.data = data.decode()

    t0 = time.perf_counter()
    decoded = orjson.loads(raw)
    t1 = time.perf_counter()
    async with ApiClient() as api:
        t2 = time.perf_counter()
        typed = api.deserialize(_Response(raw), "V1PodList")
        t3 = time.perf_counter()
    return {
        "decode_pods": len(decoded["items"]),
        "decode_bytes": len(raw),
        "raw_json_ms": (t1 - t0) * 1000,
        "typed_models_ms": (t3 - t2) * 1000,
        "typed_items": len(typed.items),
    }


async def cleanup(kubeconfig: str) -> None:
    from vpsie_autoscaler.kube import KubeClient, errors  # noqa: PLC0415
    from vpsie_autoscaler.kube.resources import NAMESPACES, NODES, PODS  # noqa: PLC0415

    async with await KubeClient.connect(kubeconfig) as client:
        listed = await client.list(NODES, label_selector=f"{NODE_LABEL}=true")
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def delete(name: str) -> None:
            async with gate:
                with contextlib.suppress(errors.NotFound):
                    await client.delete(NODES, name)

        # Pods on nodes without a kubelet never finish a graceful deletion: force them. One
        # deletecollection of 30 000 pods can outlast the apiserver's 60 s request timeout (504);
        # what it deleted stays deleted, so repeat until none are left.
        for _ in range(CLEANUP_ATTEMPTS):
            try:
                await client.delete_collection(PODS, NAMESPACE, grace_period_seconds=0, request_timeout=120)
            except errors.NotFound:
                break
            except (errors.KubeTimeout, errors.ServerError):
                pass
            if not (await client.list(PODS, NAMESPACE, limit=1)).get("items"):
                break
        await asyncio.gather(*(delete(n["metadata"]["name"]) for n in listed.get("items") or []))
        with contextlib.suppress(errors.NotFound):
            await client.delete(NAMESPACES, NAMESPACE)


def run_child(kubeconfig: str, steady: float, *, lean: bool = False) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.informer_bench", "--measure", "--kubeconfig", kubeconfig,
         "--steady-seconds", str(steady), *(["--lean"] if lean else [])],
        check=True, capture_output=True, text=True, timeout=SYNC_TIMEOUT_SECONDS + steady + 60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    parser.add_argument("--pods", type=int, default=DEFAULT_PODS)
    parser.add_argument("--steady-seconds", type=float, default=STEADY_SECONDS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lean", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--list-mode", default="paginated", help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="leave the objects in place")
    args = parser.parse_args()
    if args.measure:
        print(
            json.dumps(
                asyncio.run(
                    measure(args.kubeconfig, args.steady_seconds, args.lean, args.list_mode, args.page_size)
                )
            )
        )
        return 0

    from hack.devcluster.cluster import DevCluster, find_binaries  # noqa: PLC0415

    cluster: DevCluster | None = None
    reuse = os.environ.get("DEVCLUSTER_KUBECONFIG")
    with tempfile.TemporaryDirectory(prefix="informer-bench-") as tmp:
        if reuse:
            kubeconfig = str(Path(reuse).resolve())
        else:
            bin_dir = find_binaries()
            if bin_dir is None:
                print("control plane binaries not built: run `make devcluster-build`", file=sys.stderr)
                return 1
            cluster = DevCluster(bin_dir, Path(tmp))
            kubeconfig = str(cluster.start().kubeconfig)
        try:
            created_s = asyncio.run(
                asyncio.wait_for(populate(kubeconfig, args.nodes, args.pods), DEADLINE_SECONDS)
            )
            result = run_child(kubeconfig, args.steady_seconds)
            lean = run_child(kubeconfig, min(args.steady_seconds, LEAN_STEADY_SECONDS), lean=True)
            result["lean_peak_rss_mib"] = lean["peak_rss_mib"]
            result["lean_start_to_synced_s"] = lean["start_to_synced_s"]
            result.update(asyncio.run(decode_comparison(kubeconfig, min(DECODE_SAMPLE_PODS, args.pods))))
            result["create_s"] = created_s
            report(result)
        finally:
            if cluster is not None:
                cluster.stop()
            elif not args.keep:
                asyncio.run(cleanup(kubeconfig))
    return 0


def report(result: dict[str, Any]) -> None:
    print(
        f"informer benchmark: python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cpus; {result['nodes']} nodes, {result['pods']} pods "
        f"(created in {result['create_s']:.1f} s)"
    )
    synced = f"{result['start_to_synced_s']:.2f} s (imports {result['import_s']:.2f} s)"
    steady = f"{result['steady_cpu_cores']:.4f} cores over {result['steady_window_s']:.0f} s"
    ratio = result["typed_models_ms"] / max(result["raw_json_ms"], 1e-9)
    raw_ms, typed_ms = result["raw_json_ms"], result["typed_models_ms"]
    decode = f"raw JSON {raw_ms:.0f} ms vs typed models {typed_ms:.0f} ms ({ratio:.1f}x)"
    rows = [
        ("peak RSS", f"{result['peak_rss_mib']:.0f} MiB", "<= 200 MiB", result["peak_rss_mib"] <= 200),
        ("start to synced", synced, "<= 5 s", result["start_to_synced_s"] <= 5),
        ("steady CPU", steady, "<= 0.05", result["steady_cpu_cores"] <= 0.05),
        (
            "with the pod cache trimmed",
            f"{result['lean_peak_rss_mib']:.0f} MiB peak RSS, "
            f"{result['lean_start_to_synced_s']:.2f} s to synced",
            "<= 200 MiB",
            result["lean_peak_rss_mib"] <= 200,
        ),
        (f"decode {result['decode_pods']} pods ({result['decode_bytes'] / MIB:.1f} MiB)", decode, "", True),
    ]
    for name, value, target, ok in rows:
        mark = "" if not target else ("  ok" if ok else "  MISSED")
        print(f"  {name:<32} {value:<60} {target}{mark}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
