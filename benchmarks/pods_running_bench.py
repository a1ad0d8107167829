"""End to end: 100 pending pods → all Running, against the simulator's normal boot time.

The target: every pod Running within the simulator's boot delay + 3 s, with the autoscaler's default
settings (scan interval, expander, VPSie rate limit). The same stack and workload as the side-by-side
benchmark (``benchmarks/compare.py``: mixed shapes, the simulator's five plans as plain-VM
NodeGroups), our side only, no background nodes, with the simulator's default boot delay (the
instance turns running that long after the create call, then its Node registers).

Run: ``.venv/bin/python -m benchmarks.pods_running_bench [--boot-delay S] [--pods N]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

from benchmarks.compare import Ours, machine, parse_args, run
from vpsie_autoscaler.cloudsim.config import DEFAULT_BOOT_SECONDS

MARGIN_S: Final = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--boot-delay", type=float, default=DEFAULT_BOOT_SECONDS)
    parser.add_argument("--pods", type=int, default=100)
    opts = parser.parse_args()
    args = parse_args(
        [
            "--only=ours",
            f"--bursts={opts.pods}",
            f"--boot-delay={opts.boot_delay}",
            "--background-nodes=0",
            "--background-pods=0",
            "--idle-seconds=2",
            "--idle-settle-seconds=0",
            "--scale-down-seconds=0",
            "--deadline=900",
        ]
    )
    fig = run(args)[Ours.name].bursts[opts.pods]
    target = opts.boot_delay + MARGIN_S
    print(machine(args))
    print(
        f"{opts.pods} pods: first VPSieNode {fig.decision_first_s:.2f}s, last {fig.decision_last_s:.2f}s, "
        f"last Node {fig.nodes_last_s:.2f}s, all Running {fig.running_s:.2f}s on {fig.nodes} nodes "
        f"(${fig.hourly_cost:.3f}/h, {dict(fig.types)})"
    )
    if None not in (fig.nodes_ready_first_s, fig.nodes_ready_last_s, fig.bound_first_s, fig.bound_last_s):
        print(
            f"where the time goes: Nodes {fig.nodes_first_s:.2f}..{fig.nodes_last_s:.2f}s, Ready and "
            f"untainted {fig.nodes_ready_first_s:.2f}..{fig.nodes_ready_last_s:.2f}s, pods bound "
            f"{fig.bound_first_s:.2f}..{fig.bound_last_s:.2f}s, all Running {fig.running_s:.2f}s"
        )
    verdict = "meets" if fig.running_s <= target else "MISSES"
    print(
        f"all Running after {fig.running_s:.2f}s {verdict} the boot + {MARGIN_S:.0f}s = {target:.1f}s target"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
