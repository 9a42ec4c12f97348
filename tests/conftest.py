"""Shared fixtures: a migrated database per test, and the bot against the Bot API stand-in."""

import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade

pytest_plugins = ["tests.botapi.plugin", "tests.harness"]


def database_url(tmp_path: os.PathLike[str]) -> str:
    """A fresh SQLite file per test."""
    return f"sqlite+aiosqlite:///{os.fspath(tmp_path)}/bot.sqlite3"


@pytest.fixture
async def engine(tmp_path: os.PathLike[str]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url(tmp_path))
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
async def session(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session
