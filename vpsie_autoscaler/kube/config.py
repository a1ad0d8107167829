"""Where the apiserver is and how to authenticate: kubeconfig file or in-cluster service account.

Always into an explicit ``Configuration`` object, never kubernetes_asyncio's process-global default,
so two clients in one process (tests, the simulator's bridge) cannot leak settings into each other.

In-cluster, the library installs a ``refresh_api_key_hook`` that re-reads the projected service
account token file every minute (kubelet rotates it); the hook runs before every request that uses
the ``BearerToken`` auth setting, which :class:`~vpsie_autoscaler.kube.client.KubeClient` always asks for.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

from vpsie_autoscaler.kube.errors import KubeError

# Where Kubernetes mounts a pod's service account (namespace, token, CA) — client-go's defaults.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeConfigError(KubeError):
    """The kubeconfig (or the in-cluster environment) cannot be loaded."""


async def load_configuration(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    server: str | None = None,
    token: str | None = None,
) -> Configuration:
    """Build a ``Configuration``: ``server`` (tests, plain URL) > ``kubeconfig`` > in-cluster."""
    cfg = Configuration()
    if server is not None:
        cfg.host = server.rstrip("/")
        if token:
            cfg.api_key["BearerToken"] = token
            cfg.api_key_prefix["BearerToken"] = "Bearer"
        return cfg
    try:
        if kubeconfig is not None:
            if not _is_file(kubeconfig):
                raise KubeConfigError(f"kubeconfig {kubeconfig!r} does not exist")
            await load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        else:
            load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            _strip_token_whitespace(cfg)
    except ConfigException as exc:
        where = f"kubeconfig {kubeconfig!r}" if kubeconfig else "in-cluster service account"
        raise KubeConfigError(f"cannot load {where}: {exc}") from exc
    return cfg


def _strip_token_whitespace(cfg: Configuration) -> None:
    """kubernetes_asyncio 36.1.0 puts the token file's content into the header verbatim; a token
    file ending in a newline (a Secret-mounted token, an editor) would make an invalid header.
    Strip it now and after every refresh."""
    library_hook: Any = cfg.refresh_api_key_hook

    async def refresh(conf: Configuration, *args: object) -> None:
        if library_hook is not None:
            result = library_hook(conf, *args)
            if inspect.isawaitable(result):
                await result
        token = conf.api_key.get("BearerToken")
        if isinstance(token, str):
            conf.api_key["BearerToken"] = token.strip()

    token = cfg.api_key.get("BearerToken")
    if isinstance(token, str):
        cfg.api_key["BearerToken"] = token.strip()
    cfg.refresh_api_key_hook = refresh


def _is_file(path: str) -> bool:
    return os.path.isfile(path)


def in_cluster_namespace(default: str = "kube-system") -> str:
    """The pod's own namespace when running in a cluster (client-go's leader-election default)."""
    try:
        with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as f:
            ns = f.read().strip()
    except OSError:
        return default
    return ns or default
