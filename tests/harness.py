"""The real application, polling the Bot API stand-in over HTTP, with an injected clock.

A pytest plugin: `running_bot` starts `build_application` (what `branchbot run` runs) against
the `bot_api` stand-in and a fresh database (SQLite, or PostgreSQL: see tests/databases.py),
and stops it cleanly after the test.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Application, build_application
from bot.config import Settings, load_settings
from bot.delivery import Courier
from storage.db import create_session_factory
from tests.botapi.server import TEST_TOKEN, FakeBotAPI
from tests.databases import sqlite_url
from tests.factories import EPOCH


class MutableClock:
    """A clock tests move by hand; nothing in the bot sleeps on it."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **amount: float) -> datetime:
        self.now += timedelta(**amount)
        return self.now


@dataclass
class RunningBot:
    api: FakeBotAPI
    app: Application
    clock: MutableClock
    session_factory: async_sessionmaker[AsyncSession]
    settings: Settings

    @property
    def courier(self) -> Courier:
        courier = self.app.dispatcher.workflow_data["courier"]
        assert isinstance(courier, Courier)
        return courier

    async def settle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound on the bot
        """Wait until every update sent so far was fetched and fully handled (committed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # aiogram keeps the tasks of updates being handled here while polling.
        in_flight = self.app.dispatcher._handle_update_tasks
        while self.api.pending_updates() or in_flight:
            if loop.time() > deadline:
                raise AssertionError("the bot did not finish handling its updates")
            await asyncio.sleep(0.01)

    async def deliver_notices(self) -> int:
        """Send what the outbox owes now, as the scheduled job would."""
        await self.settle()
        return await self.courier.deliver_due()

    async def seed(self, network: dict[str, Any]) -> None:
        """Load a network file (as a dict) the way `branchbot import` does."""
        from services.importer import import_network

        async with self.session_factory() as session:
            await import_network(session, network, now=self.clock())
            await session.commit()


def bot_settings(api: FakeBotAPI, directory: os.PathLike[str], **overrides: Any) -> Settings:
    """Settings for the bot under test; the database is a SQLite file unless one is given."""
    overrides.setdefault("database_url", sqlite_url(directory))
    return load_settings(
        env_file=None,
        bot_token=TEST_TOKEN,
        bot_api_url=api.base_url,
        polling_timeout=1,
        **overrides,
    )


@pytest_asyncio.fixture
async def running_bot(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> AsyncIterator[RunningBot]:
    clock = MutableClock()
    settings = bot_settings(bot_api, tmp_path, database_url=database_url)
    app = await build_application(settings, clock=clock)
    polling = asyncio.create_task(app.run_polling(handle_signals=False))
    await _wait_until_polling(bot_api, polling)
    running = RunningBot(
        api=bot_api,
        app=app,
        clock=clock,
        session_factory=create_session_factory(app.engine),
        settings=settings,
    )
    _wait_for_the_bot_between_actions(running)
    try:
        yield running
    finally:
        await app.dispatcher.stop_polling()
        await asyncio.wait_for(polling, timeout=10)


def _wait_for_the_bot_between_actions(running: RunningBot) -> None:
    """People act one step at a time: each simulated action first lets the bot finish the last.

    Without this a test could tap before the previous update's transaction is committed, which
    a person reading the bot's answer never does.
    """
    api = running.api
    for name in ("send", "press", "press_inaccessible", "send_contact"):
        original = getattr(api, name)

        async def settled_first(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            await running.settle()
            return await _original(*args, **kwargs)

        setattr(api, name, settled_first)


async def _wait_until_polling(api: FakeBotAPI, polling: asyncio.Task[None]) -> None:
    for _ in range(200):
        if polling.done():
            polling.result()
        if any(call.method == "getUpdates" for call in api.calls):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the bot never started polling")
