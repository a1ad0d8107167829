"""Kubelet registration flags carried in a VM's boot data.

A self-managed node learns its labels and taints the way kubelet always has: ``--node-labels`` and
``--register-with-taints``. :func:`render_user_data` writes them into the boot script the VM receives
(``userData``); :func:`parse_kubelet_flags` reads them back (the simulator uses it to give a simulated
Node exactly what a real kubelet would register).
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping

from vpsie_autoscaler.vpsie.provider import Taint

USER_DATA_HEADER = "#!/bin/sh\n# vpsie-autoscaler: kubelet registration flags of this node's NodeGroup\n"
_FLAG = re.compile(r"--(node-labels|register-with-taints)=(\S*)")


def kubelet_flags(labels: Mapping[str, str], taints: tuple[Taint, ...]) -> str:
    parts = []
    if labels:
        parts.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if taints:
        parts.append(
            "--register-with-taints="
            + ",".join(f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in taints)
        )
    return " ".join(parts)


def render_user_data(labels: Mapping[str, str], taints: tuple[Taint, ...]) -> str:
    """Base64 boot script that exports the flags for kubelet (``/etc/default/kubelet``)."""
    flags = kubelet_flags(labels, taints)
    script = (
        USER_DATA_HEADER
        + f"KUBELET_EXTRA_ARGS={shlex.quote(flags)}\n"
        + 'echo "KUBELET_EXTRA_ARGS=$KUBELET_EXTRA_ARGS" >> /etc/default/kubelet\n'
    )
    return base64.b64encode(script.encode()).decode()


def parse_kubelet_flags(text: str) -> tuple[dict[str, str], list[Taint]]:
    """Labels and taints named by ``--node-labels``/``--register-with-taints`` anywhere in ``text``."""
    labels: dict[str, str] = {}
    taints: list[Taint] = []
    for flag, value in _FLAG.findall(text):
        for item in filter(None, value.strip("'\"").split(",")):
            if flag == "node-labels":
                key, _, val = item.partition("=")
                labels[key] = val
            else:
                head, _, effect = item.rpartition(":")
                key, _, val = head.partition("=")
                taints.append(Taint(key=key, value=val, effect=effect))
    return labels, taints


def decode_user_data(user_data: str) -> str:
    """The boot script from base64 ``userData`` (or the text itself if it is not base64)."""
    try:
        return base64.b64decode(user_data, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return user_data
