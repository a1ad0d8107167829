"""Registration of the autoscaling controllers, and the settings they depend on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.config import format_error, load_settings
from vpsie_autoscaler.controllers.autoscaling import limits_from


def test_an_unknown_expander_is_refused_at_start_up_with_the_choices() -> None:
    with pytest.raises(ValidationError) as err:
        load_settings({"expander": "priority,bogus"})
    message = format_error(err.value)
    assert "--expander / VPSIE_AUTOSCALER_EXPANDER" in message
    assert "unknown expander(s) bogus: choose from priority, least-waste" in message


def test_cluster_limits_come_from_the_settings() -> None:
    limits = limits_from(
        load_settings({"max_nodes_total": 50, "max_cores_total": 200, "max_memory_total_gib": 512})
    )
    assert (limits.max_nodes, limits.max_cores, limits.max_memory_gib) == (50, 200, 512)


def test_a_fractional_memory_limit_never_becomes_no_limit() -> None:
    assert limits_from(load_settings({"max_memory_total_gib": 0.5})).max_memory_gib == 1
