"""Shared fixtures: a migrated database per test, and the bot against the Bot API stand-in.

Tests run on SQLite unless TEST_DATABASE_URL names a PostgreSQL server (see tests/databases.py).
"""

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from tests.databases import REDIS_URL, drop_template, fresh_database, on_postgresql

pytest_plugins = ["tests.botapi.plugin", "tests.harness"]


def pytest_report_header() -> str:
    database = "PostgreSQL (TEST_DATABASE_URL)" if on_postgresql() else "SQLite"
    return f"database: {database}; redis: {'yes' if REDIS_URL else 'no (TEST_REDIS_URL unset)'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_template()


@pytest.fixture
def database_url(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A database of this test's own: a SQLite file, or a PostgreSQL database."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
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
