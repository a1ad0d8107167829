"""docs/reference-labels.md stays honest: every key the code defines is in its table, and every key of
ours the table names is one the code defines."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from vpsie_autoscaler.api import labels
from vpsie_autoscaler.controllers import vpsienode_keys as keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference-labels.md"
KEY_SUFFIXES = ("_LABEL", "_ANNOTATION", "_TAINT", "_FINALIZER")
_CODE = re.compile(r"`([^`]+)`")


def table_spans() -> set[str]:
    """Every `code` span in the rows of the document's tables."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("|")]
    return {span for row in rows for span in _CODE.findall(row)}


def defined(module: ModuleType, *, every: bool) -> dict[str, str]:
    """Constant name → string value: all of them (``every``), or only the key constants."""
    out: dict[str, str] = {}
    for name, value in vars(module).items():
        if not name.isupper() or not (every or name.endswith(KEY_SUFFIXES)):
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str):
                out[name if not isinstance(value, tuple) else f"{name}[{item}]"] = item
    return out


def documented(value: str, spans: set[str]) -> bool:
    # The API group is documented as the prefix of our keys, the others as themselves.
    return value in spans or any(span.startswith(f"{value}/") for span in spans)


def test_every_constant_of_api_labels_is_in_the_table() -> None:
    spans = table_spans()
    missing = {name: v for name, v in defined(labels, every=True).items() if not documented(v, spans)}
    assert not missing, f"not in the table of {DOC.name}: {missing}"


def test_every_key_the_lifecycle_controllers_write_is_in_the_table() -> None:
    spans = table_spans()
    missing = {name: v for name, v in defined(keys, every=False).items() if v not in spans}
    assert not missing, f"not in the table of {DOC.name}: {missing}"


def test_the_table_names_no_key_of_ours_the_code_does_not_define() -> None:
    known = set(defined(labels, every=True).values()) | set(defined(keys, every=False).values())
    ours = {s for s in table_spans() if s.startswith(f"{labels.GROUP}/")}
    assert ours, "the table names no autoscaler.vpsie.com/ key"
    assert ours <= known, f"stale keys in {DOC.name}: {sorted(ours - known)}"
