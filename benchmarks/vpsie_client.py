"""How fast the VPSie client parses and round-trips, against the in-process simulator on 127.0.0.1.

    .venv/bin/python -m benchmarks.vpsie_client

Prints: model parsing cost per VM record (lenient shape: numbers as strings), and the client's
sequential round-trip rate and latency percentiles for ``list_vms`` with 200 VMs and for
``get_k8s_cluster`` (the managed provider's hot call), including auth, rate limiter and breaker.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
from aiohttp.test_utils import TestServer

from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_DATACENTER,
    DEFAULT_OS,
    DEFAULT_PROJECT,
    SimConfig,
)
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.client import _VMS, VPSieClient, VPSieClientConfig

VMS = 200
PARSE_ROUNDS = 50
CALLS = 300
PLAN = "7d0c1f3e-9b2a-11ee-8c90-0050569c68dc"


def percentile(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


async def main() -> None:
    clock = FakeClock()
    sim = Simulator(SimConfig(client_id="bench", client_secret="bench-secret"), clock=clock, seed=1)
    for i in range(VMS):
        sim.state.create_vm(
            {
                "resourceIdentifier": PLAN,
                "osIdentifier": DEFAULT_OS,
                "dcIdentifier": DEFAULT_DATACENTER,
                "projectId": DEFAULT_PROJECT,
                "hostname": f"asg-bench-{i:04d}",
                "addPublicIpV4": "1",
                "addPrivateIp": "1",
            }
        )
    [group] = sim.state.groups.values()
    for _ in range(20):
        sim.state.add_node(DEFAULT_CLUSTER, group.id)
    await clock.advance(60)
    body = orjson.dumps(
        {"error": False, "data": [sim.render_vm(v.identifier) for v in sim.state.listed_vms()]}
    )
    started = time.perf_counter()
    for _ in range(PARSE_ROUNDS):
        _VMS.validate_json(body)
    per_vm_us = (time.perf_counter() - started) / (PARSE_ROUNDS * VMS) * 1e6
    print(f"parse: {per_vm_us:.1f} µs per VM record ({len(body) // VMS} bytes each, lenient shape)")

    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    config = VPSieClientConfig(
        base_url=str(server.make_url("")).rstrip("/"),
        client_id="bench",
        client_secret="bench-secret",
        rate_limit_per_minute=1e9,
        rate_limit_burst=1_000_000,
    )
    try:
        async with VPSieClient(config) as client:
            await client.list_vms()
            for name, call in (
                ("list_vms (200 VMs)", client.list_vms),
                ("get_k8s_cluster (21 nodes)", lambda: client.get_k8s_cluster(DEFAULT_CLUSTER)),
            ):
                samples = []
                total = time.perf_counter()
                for _ in range(CALLS):
                    t0 = time.perf_counter()
                    await call()
                    samples.append((time.perf_counter() - t0) * 1000)
                rate = CALLS / (time.perf_counter() - total)
                print(
                    f"{name}: {rate:.0f} calls/s sequential, p50 {statistics.median(samples):.2f} ms, "
                    f"p99 {percentile(samples, 0.99):.2f} ms (client + simulator in one process)"
                )
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(main())
