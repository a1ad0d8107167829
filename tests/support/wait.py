"""Wait for a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.01


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``within`` real seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
