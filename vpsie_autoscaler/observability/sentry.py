"""Opt-in error reporting to Sentry with the official ``sentry-sdk``.

Off unless a DSN is configured (``VPSIE_AUTOSCALER_SENTRY_DSN``; VPSie's Go autoscaler read
``--sentry-dsn``/``SENTRY_DSN``). When on:

- **What is reported.** Every structlog event at level ``error`` or above, and every failed reconcile
  (:mod:`vpsie_autoscaler.runtime.controller` logs a reconcile that raised an API error at ``warning``
  as ``reconcile failed``; the rest of its failures are errors already). Errors logged through the
  standard library by other packages (aiohttp, asyncio) are reported by sentry-sdk's logging
  integration; our own loggers are excluded from it so nothing is reported twice.
- **Tags.** ``version`` (also the release ``vpsie-autoscaler@<version>``), ``cluster`` (the cluster's
  identity, as in VM ownership tags), ``controller`` (bound by the runtime for every reconcile),
  ``logger`` and ``service=vpsie-autoscaler``. The event's other log fields go to the ``log`` context.
- **Secrets scrubbed** by :func:`scrub_event` (the ``before_send`` hook), on top of the logs' own key
  redaction: values under keys that look like credentials (token, secret, password, authorization,
  Vpsie-Auth, cookie, DSN), ``Bearer …``/``Vpsie-Auth: …``/``key=value`` credentials and JWTs inside
  strings, userinfo in URLs, and any value registered with :func:`add_secret` (the configured
  secrets), wherever they appear. Stack frames carry no local variables (``include_local_variables``
  off, and removed if present); personal data collection stays at sentry-sdk's default (off).
- **Nothing else changes.** No tracing, and no auto-enabled integrations: sentry-sdk's aiohttp
  integration would add ``sentry-trace``/``baggage`` headers to every VPSie and Kubernetes request.

Reporting never fails the caller: a Sentry problem is sentry-sdk's to log, never a reconcile error.

sentry-sdk is imported by :func:`init_sentry` only, not by importing this module: reporting is opt-in,
and the SDK with urllib3 costs ~3 MiB and 0.3 s of start-up that a controller without a DSN should not
pay. Until it is imported no client can be active, which is how the other functions tell "off" without
importing it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import structlog
from structlog.typing import EventDict

if TYPE_CHECKING:
    from sentry_sdk._types import LogLevelStr
    from sentry_sdk.types import Event, Hint

SERVICE: Final = "vpsie-autoscaler"
OWN_LOGGERS: Final = "vpsie_autoscaler*"  # reported by report_to_sentry, with tags
FILTERED: Final = "[Filtered]"
REPORTED_LEVELS: Final = frozenset({"error", "critical", "exception"})
FAILED_RECONCILE_EVENTS: Final = frozenset({"reconcile failed"})
"""Warnings that are failed reconciles (runtime.controller: an API error ended the reconcile)."""
TAG_FIELDS: Final = ("controller",)
DROPPED_FIELDS: Final = frozenset({"event", "level", "logger", "timestamp", "exc_info", "stack_info"})
MAX_FIELD_CHARS: Final = 2048
SECRET_KEY_PARTS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "vpsie-auth",
    "apikey",
    "api_key",
    "credential",
    "cookie",
    "dsn",
)
_STRING_PATTERNS: Final = (
    # Authorization: Bearer <token>, and a bare "Bearer <token>"
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{FILTERED}"),
    # Vpsie-Auth: <token> / "Vpsie-Auth": "<token>"
    (re.compile(r"(?i)(vpsie-auth[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), rf"\1{FILTERED}"),
    # key=value and "key": "value" for credential-like keys (query strings, forms, JSON, repr)
    (
        re.compile(
            r"(?i)((?:client_?secret|api_?token|access_?token|refresh_?token|token|password|secret)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        rf"\1{FILTERED}",
    ),
    # JWTs (what VPSie's login issues)
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+"), FILTERED),
    # userinfo in URLs (a DSN or a proxy URL with a password)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@"), rf"\1{FILTERED}@"),
)

_secrets: set[str] = set()
_installed = False


def add_secret(value: str | None) -> None:
    """Scrub this exact value from every event (a configured token or secret). Ignores short values:
    replacing a 3-character string everywhere would shred events without protecting anything."""
    if value and len(value) >= 6:
        _secrets.add(value)


def _secret_key(key: object) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def scrub_text(text: str) -> str:
    """``text`` with every credential it quotes replaced by ``[Filtered]``."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, FILTERED)
    for pattern, replacement in _STRING_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 32:  # events are shallow: a cycle or a monster is cut off
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, MutableMapping):
        for key in list(value):
            if key == "vars":  # stack frame locals
                del value[key]
            elif _secret_key(key) and value[key] not in (None, ""):
                value[key] = FILTERED
            else:
                value[key] = _scrub(value[key], depth + 1)
        return value
    if isinstance(value, list):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v, depth + 1) for v in value)
    return value


def scrub_event(event: Event, hint: Hint) -> Event | None:
    """The ``before_send`` hook: the event with every credential replaced (never dropped for it)."""
    scrubbed: Event = _scrub(event)
    request = scrubbed.get("request")
    if isinstance(request, dict):  # headers may come as [name, value] pairs too
        headers = request.get("headers")
        if isinstance(headers, list):
            request["headers"] = [
                [name, FILTERED] if _secret_key(name) else [name, value] for name, value in headers
            ]
    return scrubbed


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _field(value: Any) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text[:MAX_FIELD_CHARS]


def report_to_sentry(_: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: report errors and failed reconciles to Sentry; the event goes on unchanged.

    Runs after the context is merged (``controller``, ``reconcile_id``) and after the logs' own
    redaction of credential-like keys, before tracebacks are rendered.
    """
    level = str(event_dict.get("level", method_name)).lower()
    event = str(event_dict.get("event", ""))
    if level not in REPORTED_LEVELS and event not in FAILED_RECONCILE_EVENTS:
        return event_dict
    if not enabled():
        return event_dict
    import sentry_sdk  # noqa: PLC0415 - loaded already: enabled() says a client is active

    tags = {key: str(event_dict[key]) for key in TAG_FIELDS if event_dict.get(key)}
    logger = event_dict.get("logger")
    if logger:
        tags["logger"] = str(logger)
    fields = {k: _field(v) for k, v in event_dict.items() if k not in DROPPED_FIELDS}
    sentry_level: LogLevelStr = "error" if level in REPORTED_LEVELS else "warning"
    try:
        exc = _exception(event_dict.get("exc_info"))
        if exc is not None:
            sentry_sdk.capture_exception(exc, tags=tags, contexts={"log": {"event": event, **fields}})
        else:
            sentry_sdk.capture_message(event, level=sentry_level, tags=tags, contexts={"log": fields})
    except Exception:  # reporting must never break logging or a reconcile
        logging.getLogger("sentry_sdk.errors").debug("report failed", exc_info=True)
    return event_dict


def _install_processor() -> None:
    """Put :func:`report_to_sentry` into the configured structlog chain, right after the logs'
    redaction (or at the end): in place, so loggers already cached see it too."""
    global _installed  # noqa: PLW0603 - one structlog configuration per process
    if _installed:
        return
    from vpsie_autoscaler.logging import redact_secrets  # noqa: PLC0415

    processors = structlog.get_config()["processors"]
    if report_to_sentry in processors:
        _installed = True
        return
    try:
        at = processors.index(redact_secrets) + 1
    except ValueError:
        at = max(len(processors) - 1, 0)  # before the renderer / formatter wrapper
    processors.insert(at, report_to_sentry)
    _installed = True


def init_sentry(
    dsn: str,
    *,
    version: str,
    environment: str | None = None,
    secrets: Iterable[str | None] = (),
    tags: Mapping[str, str] | None = None,
    shutdown_timeout: float = 2.0,
) -> None:
    """Start reporting to ``dsn``. ``secrets`` are scrubbed wherever they appear."""
    import sentry_sdk  # noqa: PLC0415 - opt-in: see the module docstring
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger  # noqa: PLC0415

    for value in (dsn, *secrets):
        add_secret(value)
    ignore_logger(OWN_LOGGERS)
    sentry_sdk.init(
        dsn=dsn,
        release=f"{SERVICE}@{version}",
        environment=environment or "production",
        before_send=scrub_event,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=None,
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        shutdown_timeout=shutdown_timeout,
    )
    scope = sentry_sdk.get_global_scope()
    scope.set_tag("service", SERVICE)
    scope.set_tag("version", version)
    for key, value in (tags or {}).items():
        scope.set_tag(key, value)
    _install_processor()


def set_cluster(cluster: str) -> None:
    """Tag every later event with this cluster's identity (called only once reporting is on)."""
    import sentry_sdk  # noqa: PLC0415 - see the module docstring

    sentry_sdk.get_global_scope().set_tag("cluster", cluster)


def enabled() -> bool:
    """Whether a Sentry client is active. False without importing sentry-sdk when nothing has."""
    if "sentry_sdk" not in sys.modules:
        return False
    import sentry_sdk  # noqa: PLC0415 - loaded already

    return sentry_sdk.get_client().is_active()


def flush(timeout: float = 2.0) -> None:
    """Send what is queued (blocking, at most ``timeout`` seconds)."""
    if enabled():
        import sentry_sdk  # noqa: PLC0415 - loaded already

        sentry_sdk.flush(timeout=timeout)


def shutdown(timeout: float = 2.0) -> None:
    """Flush and stop reporting, and take the processor out of the structlog chain (tests; the
    process's exit flushes through sentry-sdk's own exit hook)."""
    global _installed  # noqa: PLW0603 - see _install_processor
    if "sentry_sdk" in sys.modules:
        import sentry_sdk  # noqa: PLC0415 - loaded already

        client = sentry_sdk.get_client()
        if client.is_active():
            client.close(timeout=timeout)
        sentry_sdk.get_global_scope().set_client(None)
    _secrets.clear()
    processors = structlog.get_config()["processors"]
    while report_to_sentry in processors:
        processors.remove(report_to_sentry)
    _installed = False
