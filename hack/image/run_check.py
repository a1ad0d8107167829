"""``make image-check``: the built image runs the controller against a real control plane.

``make image`` proves the image starts (``vpsie-autoscaler version``) and loads its dependencies. This
goes further, with the same constraints as the pod: the amd64 image's ``vpsie-autoscaler run`` as UID
65532, authenticated with a token of the Helm chart's ServiceAccount (so only the chart's RBAC
applies), on the local control plane (``make devcluster-build``). It passes when the controller holds
the leader Lease and ``/readyz`` answers 200.

buildah's chroot isolation shares the host network, so the probe port is reached on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from hack.devcluster.cluster import DevCluster, find_binaries
from hack.stack.chart import install_chart

ROOT = Path(__file__).resolve().parents[2]
# The defaults of hack/image/build.sh (and docker-bake.hcl), overridable the same way.
DEFAULT_REGISTRY = "ghcr.io/vpsie"
DEFAULT_IMAGE = "vpsie-autoscaler"
NAMESPACE = "image-check"
NONROOT = "65532:65532"
KUBECONFIG_IN_IMAGE = "/etc/vpsie-autoscaler/kubeconfig"
START_S = 90.0
POLL_S = 0.5
STOP_S = 40.0
HTTP_TIMEOUT_S = 3.0
LOG_TAIL_CHARS = 3000


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=HTTP_TIMEOUT_S) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def check(image: str, workdir: Path, probe_port: int, metrics_port: int) -> str:
    """Run the check; returns the Lease holder's identity or raises ``SystemExit`` with the log."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise SystemExit("the local control plane is not built: run `make devcluster-build`")
    cluster = DevCluster(bin_dir, workdir)
    handle = cluster.start()
    container = ""
    proc: subprocess.Popen[bytes] | None = None
    log = workdir / "controller.log"
    try:
        handle.client.create_namespace(NAMESPACE)
        handle.client.wait_for(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default", lambda sa: sa is not None, timeout=30
        )
        chart = install_chart(
            handle, NAMESPACE, workdir, values={"vpsie.credentials.apiToken": "t"}, wait=False
        )
        kubeconfig = handle.sa_kubeconfig(NAMESPACE, chart.service_account, path=workdir / "sa.kubeconfig")
        kubeconfig.chmod(0o644)  # read by UID 65532 inside the image
        container = subprocess.run(
            ["buildah", "from", "--quiet", "--pull-never", image], capture_output=True, text=True, check=True
        ).stdout.strip()
        env = {
            "VPSIE_AUTOSCALER_KUBECONFIG": KUBECONFIG_IN_IMAGE,
            "VPSIE_AUTOSCALER_NAMESPACE": NAMESPACE,
            "VPSIE_AUTOSCALER_LEADER_ELECTION_ID": chart.lease_name,
            "VPSIE_AUTOSCALER_METRICS_BIND_ADDRESS": f"127.0.0.1:{metrics_port}",
            "VPSIE_AUTOSCALER_HEALTH_PROBE_BIND_ADDRESS": f"127.0.0.1:{probe_port}",
            "VPSIE_AUTOSCALER_LOG_FORMAT": "json",
        }
        argv = ["buildah", "run", "--isolation", "chroot", "--user", NONROOT]
        argv += ["--volume", f"{kubeconfig}:{KUBECONFIG_IN_IMAGE}:ro"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        argv += [container, "--", "python3", "-m", "vpsie_autoscaler", "run"]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{chart.lease_name}"
        deadline = time.monotonic() + START_S
        while True:
            lease = handle.client.get_or_none(lease_path) or {}
            holder = str(lease.get("spec", {}).get("holderIdentity") or "")
            if holder and _ready(probe_port):
                return holder
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
                raise SystemExit(f"the image's controller did not become a ready leader:\n{tail}")
            time.sleep(POLL_S)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_S)
        if container:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        cluster.stop()


def default_image() -> str:
    """The amd64 tag ``make image`` gives: $REGISTRY/$IMAGE:$VERSION-amd64."""
    version = (
        os.environ.get("VERSION")
        or tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    registry = os.environ.get("REGISTRY", DEFAULT_REGISTRY)
    return f"{registry}/{os.environ.get('IMAGE', DEFAULT_IMAGE)}:{version}-amd64"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "image", nargs="?", default=default_image(), help="image in local storage (default: %(default)s)"
    )
    parser.add_argument("--probe-port", type=int, default=18481)
    parser.add_argument("--metrics-port", type=int, default=18480)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vpsie-image-check-") as tmp:
        holder = check(args.image, Path(tmp), args.probe_port, args.metrics_port)
    print(f"{args.image}: UID 65532 with the chart's ServiceAccount holds the Lease ({holder}), /readyz 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
