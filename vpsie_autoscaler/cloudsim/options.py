"""The ``cloudsim`` command-line options (argparse only, so ``vpsie-autoscaler --help`` stays instant)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


EPILOG = """\
admin endpoints (no auth, loopback only):
  GET    /_sim/state                    clusters, groups (with node labels/taints), nodes, VMs, faults
  GET    /_sim/requests                 recent requests: method, path, status
  GET    /_sim/faults                   active faults
  POST   /_sim/faults                   add a fault: {"kind": "error|html_502|rate_limit|error_200|
                                          latency|never_boot|reply_lost|late_reply",
                                          "path": "/apps/v2/k8s/*", "method": "*",
                                          "probability": 1.0, "times": null, "status": 500,
                                          "retry_after": 1, "message": "...", "seconds": 1,
                                          "lost_as": "502|504|504_json|reset"}
                                        error, html_502, rate_limit, error_200 refuse the request
                                        (nothing changes); reply_lost carries it out, then loses
                                        the answer (lost_as); late_reply carries it out, then
                                        answers after "seconds"
  DELETE /_sim/faults[/{id}]            remove one fault or all
  POST   /_sim/groups/{id}/template     node labels/taints of a VPSie node group:
                                          {"labels": {...}, "taints": [{"key", "value", "effect"}]}
  POST   /_sim/tokens/expire            expire every issued token (next call gets 401)

config file keys: client_id, client_secret, api_tokens, token_ttl_seconds, mode, token_shape
(sdk|as|both), login_body (json|form|any), account_password, max_workers_per_cluster, delays
{pending_seconds, boot_seconds, delete_seconds}, datacenters, plan_categories, plans, os_images,
projects, ssh_keys, scripts, clusters [{name, identifier, datacenter, kube_version, masters, groups
[{name, size, nodes, labels, taints}]}], faults [...]. Flags override the file.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register every cloudsim option (and the admin/config reference as the help epilog)."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on; 0 picks a free port (default: %(default)s)",
    )
    parser.add_argument(
        "--client-id",
        help="clientId accepted by POST /apps/v2/auth/from/api (default: config, else generated)",
    )
    parser.add_argument(
        "--client-secret", help="clientSecret accepted with --client-id (default: config, else generated)"
    )
    parser.add_argument(
        "--api-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="static API token for Vpsie-Auth or Authorization: Bearer (repeatable; default: generated)",
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file: catalogue, clusters and groups, delays, modes, faults"
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        help="JSON file holding clusters, groups, nodes and VMs, so a restart keeps them",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="enables the Kubernetes bridge: booted instances become kwok-managed Nodes in this cluster",
    )
    parser.add_argument(
        "--boot-delay",
        type=float,
        help="seconds from create/add-node to a running instance (default: config, else 5)",
    )
    parser.add_argument(
        "--pending-delay", type=float, help="seconds a new VM stays in /vm/pending (default: config, else 1)"
    )
    parser.add_argument(
        "--delete-delay",
        type=float,
        help="seconds from delete to the instance being gone (default: config, else 2)",
    )
    parser.add_argument(
        "--mode",
        choices=["lenient", "strict"],
        help="lenient (default): every known response variant (numbers as strings, union fields); "
        "strict: the official SDK shapes only",
    )
    parser.add_argument(
        "--login-body",
        choices=["json", "form", "any"],
        help="login bodies accepted: json (strict mode's default, as the official SDK sends it), form "
        "(form-encoded only; a JSON login gets 401), any (lenient mode's default)",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        help="lifetime in seconds of tokens issued by the login endpoint (default: config, else 3600)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="add a fault at start, as the JSON (or YAML flow) body of POST /_sim/faults, e.g. "
        '\'{"kind": "reply_lost", "lost_as": "reset", "method": "POST", "path": "/apps/v2/vm"}\' '
        "(repeatable; added after the config file's faults)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed for generated ids, hostnames and fault probabilities (default: random)"
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="write {base_url, client_id, client_secret, api_token} as JSON here once listening",
    )
