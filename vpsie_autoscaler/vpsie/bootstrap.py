"""Kubelet registration flags carried in a VM's boot data.

A self-managed node learns its labels and taints the way kubelet always has: ``--node-labels`` and
``--register-with-taints``. :func:`render_user_data` writes them into the boot script the VM receives
(``userData``); :func:`parse_kubelet_flags` reads them back (the simulator uses it to give a simulated
Node exactly what a real kubelet would register).

**Nothing reaches the script unchecked.** The NodeGroup's CRD schema already validates labels and taints,
but this is the boundary where a value turns into a shell line, a line of ``/etc/default/kubelet`` and
kubelet arguments, so every key, value and effect is validated again here with Kubernetes' own syntax
(qualified names, label values, the three taint effects) and anything else raises :class:`BootDataError`
(a ``ValueError``) before any VPSie call is made. That syntax admits no whitespace, newline (Unicode
line separators included), comma, ``=``/``:`` inside a value, quote, ``$``, backtick or backslash, so a
value can neither add a label or taint, nor a kubelet flag, nor a line; the assignment is quoted with
:func:`shlex.quote` on top, and the finished flag string is checked against that character set once
more.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping
from typing import Final

from vpsie_autoscaler.vpsie.errors import mark_request_sent
from vpsie_autoscaler.vpsie.provider import Taint

USER_DATA_HEADER = "#!/bin/sh\n# vpsie-autoscaler: kubelet registration flags of this node's NodeGroup\n"
KUBELET_DEFAULTS_FILE: Final = "/etc/default/kubelet"
_ASSIGNMENT: Final = "KUBELET_EXTRA_ARGS="
_FLAG = re.compile(r"--(node-labels|register-with-taints)=(\S*)")

# Kubernetes' syntax (k8s.io/apimachinery/pkg/util/validation): a qualified name is an optional
# DNS-1123 subdomain prefix (<= 253) and "/", then a name (<= 63); a label value is <= 63 of the name's
# characters, or empty. ASCII only: \Z and fullmatch leave no room for a trailing newline.
_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", re.ASCII)
_PREFIX: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
NAME_MAX_LENGTH: Final = 63
PREFIX_MAX_LENGTH: Final = 253
LABEL_VALUE_MAX_LENGTH: Final = 63
TAINT_EFFECTS: Final = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})
# What a valid flag string can hold; anything else means a check above has a hole.
_SAFE_FLAGS: Final = re.compile(r"[-A-Za-z0-9_./=:, ]*", re.ASCII)


class BootDataError(ValueError):
    """A label or taint that cannot be put into boot data. Raised before any call: nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        mark_request_sent(self, False)


def _shown(value: object) -> str:
    """The offending value for a message: repr (newlines and controls escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_qualified_name(key: object, what: str) -> str:
    """``key`` if it is a Kubernetes qualified name (label or taint key), else :class:`BootDataError`."""
    if not isinstance(key, str):
        raise BootDataError(f"{what} key {_shown(key)} is not a string")
    prefix, slash, name = key.rpartition("/")
    ok = (
        0 < len(name) <= NAME_MAX_LENGTH
        and _NAME.fullmatch(name) is not None
        and (not slash or (0 < len(prefix) <= PREFIX_MAX_LENGTH and _PREFIX.fullmatch(prefix) is not None))
    )
    if not ok:
        raise BootDataError(
            f"{what} key {_shown(key)} is not a Kubernetes qualified name "
            "([prefix/]name: letters, digits, '-', '_', '.'; name <= 63, prefix a DNS subdomain)"
        )
    return key


def check_label_value(value: object, what: str) -> str:
    """``value`` if it is a Kubernetes label value (taint values share the syntax)."""
    if not isinstance(value, str):
        raise BootDataError(f"{what} value {_shown(value)} is not a string")
    if value and not (len(value) <= LABEL_VALUE_MAX_LENGTH and _NAME.fullmatch(value)):
        raise BootDataError(
            f"{what} value {_shown(value)} is not a Kubernetes label value "
            "(<= 63 letters, digits, '-', '_', '.', beginning and ending with a letter or digit)"
        )
    return value


def check_taint(taint: Taint) -> Taint:
    check_qualified_name(taint.key, "taint")
    check_label_value(taint.value, "taint")
    if taint.effect not in TAINT_EFFECTS:
        raise BootDataError(
            f"taint effect {_shown(taint.effect)} is not one of {', '.join(sorted(TAINT_EFFECTS))}"
        )
    return taint


def kubelet_flags(labels: Mapping[str, str], taints: tuple[Taint, ...]) -> str:
    """``--node-labels=k=v,... --register-with-taints=k=v:Effect,...``, every part validated."""
    seen: set[tuple[str, str]] = set()
    for taint in taints:
        check_taint(taint)
        if (taint.key, taint.effect) in seen:  # kubelet refuses to start with such a pair
            raise BootDataError(f"taint {_shown(taint.key)} with effect {taint.effect} is given twice")
        seen.add((taint.key, taint.effect))
    items = sorted(
        (check_qualified_name(k, "label"), check_label_value(v, "label")) for k, v in labels.items()
    )
    parts = []
    if items:
        parts.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in items))
    if taints:
        parts.append(
            "--register-with-taints="
            + ",".join(f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in taints)
        )
    flags = " ".join(parts)
    if not _SAFE_FLAGS.fullmatch(flags):  # pragma: no cover - unreachable after the checks above
        raise BootDataError("kubelet flags hold a character the checks should have refused")
    return flags


def render_user_data(labels: Mapping[str, str], taints: tuple[Taint, ...]) -> str:
    """Base64 boot script that adds the flags to kubelet's defaults (``/etc/default/kubelet``).

    Raises :class:`BootDataError` (a ``ValueError``) for a label or taint Kubernetes would refuse.
    """
    flags = kubelet_flags(labels, taints)
    script = (
        USER_DATA_HEADER
        + f"{_ASSIGNMENT}{shlex.quote(flags)}\n"
        + f"printf '%s\\n' \"{_ASSIGNMENT}$KUBELET_EXTRA_ARGS\" >> {KUBELET_DEFAULTS_FILE}\n"
    )
    return base64.b64encode(script.encode()).decode()


def kubelet_args(script: str) -> list[str]:
    """The kubelet arguments the boot script hands over, as kubelet receives them.

    The shell assignment is read with :func:`shlex.split` (as ``sh`` would), and its value split on
    whitespace (as systemd splits ``$KUBELET_EXTRA_ARGS`` in kubelet's command line). Raises ValueError
    if the script does not hold exactly one assignment.
    """
    lines = [line for line in script.splitlines() if line.startswith(_ASSIGNMENT)]
    if len(lines) != 1:
        raise ValueError(f"expected one {_ASSIGNMENT} line, found {len(lines)}")
    words = shlex.split(lines[0], comments=True)
    if len(words) != 1:
        raise ValueError(f"the {_ASSIGNMENT} line is {len(words)} shell words, not one assignment")
    return words[0].removeprefix(_ASSIGNMENT).split()


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
