"""Structured logging: JSON lines in production, readable console output on a terminal.

Follows runtime-semantics §6.2: one processor chain for structlog and for the standard library
(aiohttp, kubernetes_asyncio log through ``logging``), so every line has the same shape —
``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` plus bound context (a reconcile's
``controller``/``reconcile_id``/``namespace``/``name`` come from contextvars).

Values under keys that look like credentials are replaced before rendering, so a careless
``log.info(..., token=...)`` cannot leak a secret.

structlog is imported here without ``rich``, whatever the environment holds: structlog imports rich
(and through it pygments, ~4.5 MiB and 0.3 s of start-up, about 100 modules) whenever it can, for
the locals of structured tracebacks and for its console renderer's tracebacks. We use neither:
tracebacks carry no locals (``show_locals=False``) and the console renderer is given
``plain_traceback``. The image ships without rich (only the development tools depend on it), so
hiding it makes a development environment render exactly what a deployed controller renders.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO


def _import_structlog_without_rich() -> None:
    """Import structlog while ``import rich`` fails (a ``None`` entry in ``sys.modules`` makes the
    import system raise ImportError, which structlog's optional imports expect), then make rich
    importable again for anyone else. A no-op once structlog or rich is loaded: structlog has
    decided then."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401, PLC0415
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

import orjson  # noqa: E402
import structlog  # noqa: E402
from structlog.typing import EventDict, Processor  # noqa: E402

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
REDACTED = "[REDACTED]"
# Substrings of keys whose values are never logged.
SECRET_KEY_PARTS = ("token", "secret", "password", "authorization", "apikey", "api_key", "credential")
# Chatty libraries stay at warning unless we debug.
QUIET_LOGGERS = ("aiohttp.access", "kubernetes_asyncio", "urllib3", "asyncio")


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        lowered = key.lower()
        if any(part in lowered for part in SECRET_KEY_PARTS) and event_dict[key] is not None:
            event_dict[key] = REDACTED
    return event_dict


def _json_dumps(obj: MutableMapping[str, Any], **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and route the standard library's logging through the same renderer."""
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    numeric = LEVELS.get(level, logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    # Structured tracebacks *without* local variables: locals can hold tokens and whole objects.
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    extra: list[Processor] = [] if use_console else [tracebacks]
    structlog.configure(
        processors=[*shared, *extra, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *extra, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric == logging.DEBUG else logging.WARNING)
