"""pytest plugin providing the Bot API stand-in to tests.

Load it from the root conftest with ``pytest_plugins = ["tests.botapi.plugin"]``.

``bot_api`` is a started FakeBotAPI; at teardown it fails the test if the bot sent anything
Telegram would refuse (``api.violations``). Options for one test go in a marker::

    @pytest.mark.bot_api(enforce_rates=True, callback_timeout=1.0)
    async def test_broadcast_is_paced(bot_api): ...

``bot_api_bot`` is an aiogram Bot already pointed at the stand-in, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from .server import DEFAULT_USERNAME, TEST_TOKEN, FakeBotAPI

__all__ = [
    "DEFAULT_USERNAME",
    "TEST_TOKEN",
    "LocalSession",
    "bot_api",
    "bot_api_bot",
    "make_bot",
    "violations_report",
]

_MARKER = "bot_api"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): keyword arguments for the FakeBotAPI of the bot_api fixture",
    )


class LocalSession(AiohttpSession):
    """aiogram's HTTP session, for a server on this machine.

    aiogram pauses for a quarter of a second on close so TLS connections can finish; the
    stand-in speaks plain HTTP, so the pause would only slow every test down.
    """

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(api: FakeBotAPI, **bot_options: Any) -> Bot:
    """An aiogram Bot that talks to ``api``; close its session when done."""
    session = LocalSession(api=TelegramAPIServer.from_base(api.base_url))
    return Bot(api.token, session=session, **bot_options)


def violations_report(api: FakeBotAPI) -> str:
    lines = [f"the bot made {len(api.violations)} request(s) Telegram would refuse:"]
    lines.extend(f"  - {violation}" for violation in api.violations)
    return "\n".join(lines)


@pytest_asyncio.fixture
async def bot_api(request: pytest.FixtureRequest) -> AsyncIterator[FakeBotAPI]:
    marker = request.node.get_closest_marker(_MARKER)
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    api = FakeBotAPI(options.pop("token", TEST_TOKEN), **options)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
    if api.violations:
        pytest.fail(violations_report(api), pytrace=False)


@pytest_asyncio.fixture
async def bot_api_bot(bot_api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = make_bot(bot_api)
    try:
        yield bot
    finally:
        await bot.session.close()
