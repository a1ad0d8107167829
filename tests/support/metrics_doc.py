"""The metrics contract: ``docs/metrics.md`` and the metric names PromQL expressions read.

Used by the chart tests (the dashboard and the alerts may only use documented metrics) and by the
tests that scrape a running controller (every documented metric must be exposed).
"""

from __future__ import annotations

import re
from pathlib import Path

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_PROMQL_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promql_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label names, functions and keywords excluded)."""
    text = _PROMQL_STRING.sub('""', expr)
    text = _PROMQL_MATCHERS.sub("", text)
    text = _PROMQL_RANGE.sub("", text)
    text = _PROMQL_GROUPING.sub("", text)
    return {m for m in _PROMQL_IDENT.findall(text) if m.lower() not in _PROMQL_KEYWORDS}


def documented_metrics() -> dict[str, str]:
    """name -> type from docs/metrics.md."""
    rows = re.findall(r"^\| `([a-z_:]+)` \| (\w+) \|", METRICS_DOC.read_text(), re.MULTILINE)
    return dict(rows)


def base_metric_name(name: str, documented: dict[str, str]) -> str:
    """``x_bucket`` / ``x_sum`` / ``x_count`` of a documented histogram ``x`` → ``x``."""
    for suffix in _HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and documented.get(base) == "histogram":
            return base
    return name


_PAIRS = {")": "(", "]": "[", "}": "{"}


def promql_balanced(expr: str) -> bool:
    """Brackets, braces and parentheses pair up outside string literals (a cheap syntax check)."""
    stack: list[str] = []
    for char in _PROMQL_STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in _PAIRS and (not stack or stack.pop() != _PAIRS[char]):
            return False
    return not stack
