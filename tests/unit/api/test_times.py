"""One reader and one writer of Kubernetes times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vpsie_autoscaler.api.times import parse_time, rfc3339


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T09:00:00Z", datetime(2026, 11, 27, 9, tzinfo=UTC)),
        ("2026-11-27T10:00:00+01:00", datetime(2026, 11, 27, 9, tzinfo=UTC)),
        ("2026-11-27T09:00:00", datetime(2026, 11, 27, 9, tzinfo=UTC)),  # no offset: UTC
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time_is_lenient_and_always_aware(value: object, expected: datetime | None) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_rfc3339_round_trips_in_whole_utc_seconds() -> None:
    t = datetime(2026, 11, 27, 10, 0, 0, 700_000, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(t) == "2026-11-27T09:00:00Z"
    assert parse_time(rfc3339(t)) == t.replace(microsecond=0)
