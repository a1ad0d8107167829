"""Logging: JSON lines, standard-library logs routed through the same pipeline, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from vpsie_autoscaler.logging import configure


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_level_logger_timestamp_and_context() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    with structlog.contextvars.bound_contextvars(reconcile_id="r-1"):
        structlog.get_logger("vpsie_autoscaler.test").info("scaled up", nodes=2)
    structlog.get_logger("x").debug("filtered out")
    (entry,) = lines(out)
    assert entry["event"] == "scaled up"
    assert entry["nodes"] == 2
    assert entry["level"] == "info"
    assert entry["logger"] == "vpsie_autoscaler.test"
    assert entry["reconcile_id"] == "r-1"
    assert str(entry["timestamp"]).endswith("Z")


def test_stdlib_logs_share_the_json_format() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    logging.getLogger("aiohttp.client").warning("retrying %s", "GET")
    (entry,) = lines(out)
    assert (entry["event"], entry["level"], entry["logger"]) == ("retrying GET", "warning", "aiohttp.client")


def test_secrets_are_redacted_and_tracebacks_carry_no_locals() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    log = structlog.get_logger("x")
    log.info("auth", api_token="tok-123", client_secret="s3", authorization="Bearer x")

    def fail(token: str) -> None:
        raise RuntimeError("nope")

    try:
        fail("tok-456")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    for secret in ("tok-123", "s3", "Bearer x", "tok-456"):
        assert secret not in text
    assert lines(out)[0]["api_token"] == "[REDACTED]"


def test_console_format_is_human_readable() -> None:
    out = io.StringIO()
    configure("debug", "console", stream=out)
    structlog.get_logger("x").debug("hello", n=1)
    assert "hello" in out.getvalue()
    assert not out.getvalue().startswith("{")
