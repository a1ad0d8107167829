"""The ``vpsie-autoscaler`` command line.

Each subcommand lives in its own module and registers itself in ``COMMANDS``; heavy imports happen
inside the handlers so ``vpsie-autoscaler version`` stays instant.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable, Sequence

from vpsie_autoscaler import __version__

Handler = Callable[[argparse.Namespace], int]


def _version(_: argparse.Namespace) -> int:
    print(f"vpsie-autoscaler {__version__} (python {platform.python_version()})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vpsie_autoscaler.run import main as run_main  # noqa: PLC0415 - keep other commands instant

    return run_main(args)


def _cloudsim(args: argparse.Namespace) -> int:
    from vpsie_autoscaler.cloudsim.cli import run  # noqa: PLC0415 - keep other commands instant

    return run(args)


def _crds(_: argparse.Namespace) -> int:
    from vpsie_autoscaler.api.crdgen import crds_yaml  # noqa: PLC0415 - keep `version` instant

    sys.stdout.write(crds_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpsie-autoscaler",
        description="Kubernetes node autoscaler for the VPSie cloud.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=_version)
    from vpsie_autoscaler.run import add_arguments as add_run_arguments  # noqa: PLC0415 - argparse only

    run = sub.add_parser(
        "run",
        help="run the autoscaler (controllers, leader election, /metrics, /healthz, /readyz)",
        description="Run the autoscaler until SIGTERM. Every flag also reads VPSIE_AUTOSCALER_<NAME>.",
    )
    add_run_arguments(run)
    run.set_defaults(handler=_run)

    from vpsie_autoscaler.cloudsim.options import add_arguments  # noqa: PLC0415 - argparse only

    cloudsim = sub.add_parser(
        "cloudsim",
        help="run the VPSie simulator (VPSie API, quirks and faults on loopback; optional Kubernetes bridge)",
        description=(
            "Serve the VPSie API paths the autoscaler uses, with VPSie's envelopes and quirks, asynchronous "
            "provisioning and fault injection (admin endpoints under /_sim). With --kubeconfig, booted "
            "instances appear as kwok-managed Nodes. Prints the credentials it accepts."
        ),
    )
    add_arguments(cloudsim)
    cloudsim.set_defaults(handler=_cloudsim)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (multi-document YAML)")
    crds.set_defaults(handler=_crds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
