"""Durations are said back the way NodeGroups write them (``10m``, not ``0:10:00``), and read back
unchanged: the text an operator copies from an Event into a NodeGroup means the same duration."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsie_autoscaler.api.durations import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)

UNITS = ("ns", "us", "ms", "s", "m", "h")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=1, seconds=30), "1m30s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(hours=2, seconds=5), "2h5s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=2.5), "2.5s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=40), "40us"),
        (timedelta(days=2), "48h"),
        (timedelta(0), "0s"),
        (timedelta(seconds=-5), "0s"),
        (95.0, "1m35s"),  # seconds, as the flags hold them
        (3700, "1h1m40s"),
        (0.25, "250ms"),
    ],
)
def test_format_duration_speaks_go(value: timedelta | float, text: str) -> None:
    assert format_duration(value) == text


def test_parse_duration_is_exact_not_binary_floating_point() -> None:
    assert parse_duration("1.1s") == timedelta(seconds=1, microseconds=100_000)
    assert parse_duration("0.1h0.1m0.1s") == timedelta(seconds=366, microseconds=100_000)
    assert parse_duration("1.5us") == timedelta(microseconds=2)  # half-even, as timedelta rounds


def test_parse_duration_refuses_what_no_timedelta_holds() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("9" * 30 + "h")


def go_durations() -> st.SearchStrategy[str]:
    """Any text the CRD's pattern and length admit: one or more ``<number><unit>`` parts."""
    number = st.builds(
        lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
        st.integers(min_value=0, max_value=10**7),
        st.none() | st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    )
    part = st.builds(lambda n, u: n + u, number, st.sampled_from(UNITS))
    return st.lists(part, min_size=1, max_size=4).map("".join).filter(lambda s: len(s) <= DURATION_MAX_LENGTH)


@given(go_durations())
def test_format_of_parse_parses_back_to_the_same_duration(text: str) -> None:
    value = parse_duration(text)
    said = format_duration(value)
    assert re.fullmatch(DURATION_PATTERN, said)
    assert len(said) <= DURATION_MAX_LENGTH
    assert parse_duration(said) == value


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_every_timedelta_is_said_in_a_text_that_means_it(value: timedelta) -> None:
    said = format_duration(value)
    assert parse_duration(said) == value
    assert format_duration(parse_duration(said)) == said  # one canonical spelling
