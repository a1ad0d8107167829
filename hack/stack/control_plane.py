"""The local control plane a benchmark runs on: the one named by ``DEVCLUSTER_KUBECONFIG`` (reused,
left running), else its own, built by ``make devcluster-build`` and stopped when the run ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hack.devcluster.cluster import ClusterHandle, DevCluster, find_binaries


@contextmanager
def local_control_plane(workdir: Path) -> Iterator[ClusterHandle]:
    reuse = os.environ.get("DEVCLUSTER_KUBECONFIG")
    bin_dir = find_binaries()
    if reuse:
        yield ClusterHandle.attach(Path(reuse).resolve(), bin_dir or Path(reuse).parent / "bin", workdir)
        return
    if bin_dir is None:
        raise SystemExit("the local control plane is not built: run `make devcluster-build`")
    dev = DevCluster(bin_dir, workdir / "cluster")
    try:
        yield dev.start()
    finally:
        dev.stop()
