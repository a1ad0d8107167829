from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_apiserver import FakeApiServer


@pytest.fixture
async def fake_apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
