"""The chart README's values table is generated from values.yaml's ``# --`` comments and kept in sync.

A value added without a description, or a description changed without regenerating the README
(``make chart-docs``), fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hack.chart import values_table

CHART = Path(__file__).resolve().parents[2] / "charts" / "vpsie-autoscaler"
VALUES = (CHART / "values.yaml").read_text()
README = (CHART / "README.md").read_text()


def test_readme_values_table_is_generated_from_values_yaml() -> None:
    assert values_table.with_table(README, values_table.render(VALUES)) == README, (
        "charts/vpsie-autoscaler/README.md is stale: run `make chart-docs`"
    )


def test_every_value_is_in_the_table() -> None:
    keys = {row.key.strip("`") for row in values_table.rows(VALUES)}
    values = yaml.safe_load(VALUES)
    for leaf in values_table._leaves(values):
        assert any(leaf == k or leaf.startswith(k + ".") for k in keys), leaf
    new_values = {
        "affinity",
        "extraVolumes",
        "extraVolumeMounts",
        "envFrom",
        "commonLabels",
        "proxy.httpsProxy",
    }
    assert new_values <= keys


def test_a_changed_description_makes_the_readme_stale() -> None:
    changed = VALUES.replace("# -- Image pull policy.", "# -- When to pull the image.")
    assert changed != VALUES
    assert values_table.with_table(README, values_table.render(changed)) != README


def test_a_value_without_description_is_refused() -> None:
    with pytest.raises(values_table.UndocumentedValues, match=r"newKnob"):
        values_table.render(VALUES + "newKnob: 3\n")


def test_comment_blocks_map_to_nested_keys_and_defaults() -> None:
    text = (
        "# -- Top level.\n"
        "top: 1\n"
        "group:\n"
        "  # -- A nested value,\n"
        "  # over two lines.\n"
        "  inner: a|b\n"
        "  # -- A documented mapping covers its children.\n"
        "  # @default -- two fields\n"
        "  block:\n"
        "    x: 1\n"
        "    y: [1, 2]\n"
    )
    assert values_table.rows(text) == [
        values_table.Row("`top`", "`1`", "Top level."),
        values_table.Row("`group.inner`", '`"a\\|b"`', "A nested value, over two lines."),
        values_table.Row("`group.block`", "two fields", "A documented mapping covers its children."),
    ]
