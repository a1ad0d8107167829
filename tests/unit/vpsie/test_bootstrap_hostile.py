"""No label or taint value can add a kubelet flag, a label, a taint or a line to a VM's boot data.

Every value is validated with Kubernetes' syntax where it becomes boot data; what passes is checked the
way the VM uses it: the userData is decoded, the script run by ``sh``, and the kubelet arguments read back
from it must be exactly the intended labels and taints, and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vpsie_autoscaler.vpsie.bootstrap import (
    KUBELET_DEFAULTS_FILE,
    BootDataError,
    decode_user_data,
    kubelet_args,
    parse_kubelet_flags,
    render_user_data,
)
from vpsie_autoscaler.vpsie.errors import request_may_have_reached_vpsie
from vpsie_autoscaler.vpsie.provider import Taint

HOSTILE_VALUES = [
    "gpu\n--anonymous-auth=true",
    "gpu\r\n--anonymous-auth=true",
    "gpu --anonymous-auth=true",
    "gpu\t--anonymous-auth=true",
    "gpu; rm -rf /",
    "$(curl x)",
    "${IFS}",
    "`curl x`",
    "gpu'; curl x; '",
    'gpu"; curl x; "',
    "gpu\\",
    "gpu,evil=1",
    "gpu,node-role.kubernetes.io/control-plane=",
    "a=b",
    "gpu:NoSchedule",
    "gpu\u2028--anonymous-auth=true",  # Unicode line separator
    "gpu\u2029x",  # Unicode paragraph separator
    "gpu\x85x",  # NEL
    "gpu\x00x",
    "gpu\u00a0x",  # no-break space
    "gpü",
    "-gpu",
    "gpu-",
    "x" * 64,
]

HOSTILE_KEYS = [
    *HOSTILE_VALUES,
    "",
    "a=b",
    "pool=",
    "example.com/",
    "/pool",
    "Example.com/pool",  # the prefix is a DNS subdomain: lower case
    "a/b/c",
    "example..com/pool",
    "x" * 254 + "/pool",
]


def flags_of(user_data: str) -> list[str]:
    return kubelet_args(decode_user_data(user_data))


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
def test_a_hostile_label_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="label value"):
        render_user_data({"pool": value}, ())


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_a_hostile_label_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="label key"):
        render_user_data({key: "gpu"}, ())


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
def test_a_hostile_taint_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="taint value"):
        render_user_data({}, (Taint(key="gpu", value=value, effect="NoSchedule"),))


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_a_hostile_taint_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="taint key"):
        render_user_data({}, (Taint(key=key, effect="NoSchedule"),))


@pytest.mark.parametrize(
    "effect",
    ["", "noschedule", "NoSchedule,evil:NoExecute", "NoSchedule --anonymous-auth=true", "NoSchedule\n"],
)
def test_an_unknown_taint_effect_is_refused(effect: str) -> None:
    with pytest.raises(ValueError, match="taint effect"):
        render_user_data({}, (Taint(key="gpu", effect=effect),))


def test_non_string_values_are_refused() -> None:
    with pytest.raises(ValueError, match="not a string"):
        render_user_data({"pool": 3}, ())  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not a string"):
        render_user_data({}, (Taint(key="gpu", value=None, effect="NoSchedule"),))  # type: ignore[arg-type]


def test_a_taint_given_twice_is_refused() -> None:
    twice = (
        Taint(key="gpu", value="a", effect="NoSchedule"),
        Taint(key="gpu", value="b", effect="NoSchedule"),
    )
    with pytest.raises(ValueError, match="twice"):
        render_user_data({}, twice)


def test_a_refusal_says_nothing_was_sent_and_escapes_the_value() -> None:
    with pytest.raises(BootDataError) as exc:
        render_user_data({"pool": "gpu\n--anonymous-auth=true"}, ())
    assert request_may_have_reached_vpsie(exc.value) is False
    assert "\n" not in str(exc.value)


EDGE_LABELS = {
    "pool": "gpu",
    "empty": "",
    "example.com/team": "a-b_c.d",
    "sub.example.com/Name_With.Dots-1": "Z9",
    "node.kubernetes.io/exclude-from-external-load-balancers": "true",
    "x" * 63: "y" * 63,
    ("a" * 63 + ".") * 3 + "a" * 61 + "/n": "v",
}
EDGE_TAINTS = (
    Taint(key="dedicated", value="gpu", effect="NoSchedule"),
    Taint(key="example.com/spot", effect="PreferNoSchedule"),
    Taint(key="dedicated", value="gpu", effect="NoExecute"),
)


def test_valid_edge_values_round_trip_exactly() -> None:
    user_data = render_user_data(EDGE_LABELS, EDGE_TAINTS)
    labels = ",".join(f"{k}={v}" for k, v in sorted(EDGE_LABELS.items()))
    taints = "dedicated=gpu:NoSchedule,example.com/spot:PreferNoSchedule,dedicated=gpu:NoExecute"
    assert flags_of(user_data) == [f"--node-labels={labels}", f"--register-with-taints={taints}"]
    assert parse_kubelet_flags(decode_user_data(user_data)) == (EDGE_LABELS, list(EDGE_TAINTS))


@pytest.mark.parametrize(
    ("labels", "taints", "expected"),
    [
        ({}, (), []),
        ({"pool": "gpu"}, (), ["--node-labels=pool=gpu"]),
        ({}, (Taint(key="gpu", effect="NoSchedule"),), ["--register-with-taints=gpu:NoSchedule"]),
    ],
)
def test_only_the_flags_that_are_needed(
    labels: dict[str, str], taints: tuple[Taint, ...], expected: list[str]
) -> None:
    assert flags_of(render_user_data(labels, taints)) == expected


def test_the_script_is_exactly_the_header_and_two_lines() -> None:
    script = decode_user_data(render_user_data(EDGE_LABELS, EDGE_TAINTS))
    lines = script.split("\n")
    assert lines[-1] == "", "the script ends with a newline"
    assert len(lines[:-1]) == 4
    assert lines[2].startswith("KUBELET_EXTRA_ARGS='--node-labels=")
    assert lines[3] == "printf '%s\\n' \"KUBELET_EXTRA_ARGS=$KUBELET_EXTRA_ARGS\" >> " + KUBELET_DEFAULTS_FILE
    assert script.splitlines() == lines[:-1], "no other line breaks (str.splitlines knows Unicode ones)"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_sh_writes_one_line_with_exactly_the_intended_flags(tmp_path: Path) -> None:
    defaults = tmp_path / "kubelet"
    script = decode_user_data(render_user_data(EDGE_LABELS, EDGE_TAINTS))
    script = script.replace(KUBELET_DEFAULTS_FILE, str(defaults))
    subprocess.run(["sh", "-c", script], check=True, cwd=tmp_path, timeout=10, env={"PATH": "/usr/bin:/bin"})
    written = defaults.read_text()
    assert written.count("\n") == 1
    assert written.endswith("\n")
    name, _, value = written.rstrip("\n").partition("=")
    assert name == "KUBELET_EXTRA_ARGS"
    assert value.split() == flags_of(render_user_data(EDGE_LABELS, EDGE_TAINTS))
    assert parse_kubelet_flags(written) == (EDGE_LABELS, list(EDGE_TAINTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubelet"], "the script made nothing else"
