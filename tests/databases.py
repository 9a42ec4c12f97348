"""The database a test runs on: a fresh SQLite file, or a fresh PostgreSQL database.

With `TEST_DATABASE_URL` unset every test gets its own SQLite file in its tmp_path. Set it to a
PostgreSQL server URL with a role that may create databases (`.ci/run` does), for example
`postgresql+asyncpg://postgres:secret@127.0.0.1:54329/postgres`, and every test gets its own
database there instead, created for it and dropped after it, so tests stay independent.

To keep that fast, the schema is migrated once per test session into a template database, and
each test's database is a copy of it (`CREATE DATABASE ... TEMPLATE`). A test that needs a
database without any schema asks for an empty one.

`TEST_REDIS_URL` names a Redis server for the tests of the Redis dialog storage.
"""

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import create_engine
from storage.migrate import upgrade

Result = TypeVar("Result")

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "").strip() or None
REDIS_URL = os.environ.get("TEST_REDIS_URL", "").strip() or None

postgresql_only = pytest.mark.skipif(
    SERVER_URL is None,
    reason="runs on PostgreSQL only: set TEST_DATABASE_URL to a server (.ci/run does)",
)
needs_redis = pytest.mark.skipif(
    REDIS_URL is None, reason="needs Redis: set TEST_REDIS_URL to a server (.ci/run does)"
)

_template_lock = threading.Lock()
_template: str | None = None


def on_postgresql() -> bool:
    return SERVER_URL is not None


def sqlite_url(directory: os.PathLike[str], name: str = "bot") -> str:
    return f"sqlite+aiosqlite:///{os.fspath(directory)}/{name}.sqlite3"


def _server() -> URL:
    assert SERVER_URL is not None
    url = make_url(SERVER_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    return url


def _url_of(database: str) -> str:
    return _server().set(database=database).render_as_string(hide_password=False)


def _in_own_loop(work: Coroutine[Any, Any, Result]) -> Result:
    """Run a coroutine to the end on a loop of its own, from sync or async code alike."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _administer(*statements: str) -> None:
    engine = create_async_engine(_server(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _template_database() -> str:
    """The template with the schema at head, made on first use in this test session."""
    global _template
    with _template_lock:
        if _template is None:
            name = f"test_template_{secrets.token_hex(6)}"
            _in_own_loop(_administer(f'CREATE DATABASE "{name}" TEMPLATE template0'))
            try:
                _in_own_loop(_migrate(_url_of(name)))
            except BaseException:
                _in_own_loop(_administer(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                raise
            _template = name
        return _template


def drop_template() -> None:
    """At the end of the session: drop the template database if one was made."""
    global _template
    with _template_lock:
        if _template is not None:
            _in_own_loop(_administer(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)'))
            _template = None


def create_database(*, empty: bool = False) -> str:
    """A new PostgreSQL database (with the schema unless `empty`); returns its URL."""
    name = f"test_{secrets.token_hex(8)}"
    template = "template0" if empty else _template_database()
    _in_own_loop(_administer(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return _url_of(name)


def drop_database(url: str) -> None:
    # FORCE ends connections a test left open, so the drop never waits for them.
    name = make_url(url).database
    _in_own_loop(_administer(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_database(
    directory: os.PathLike[str], *, name: str = "bot", empty: bool = False
) -> Iterator[str]:
    """The URL of a database of this test's own, removed afterwards on PostgreSQL.

    The SQLite file is always empty; on PostgreSQL the schema is already there unless `empty`
    (migrating again is a no-op, so callers that migrate behave the same on both).
    """
    if not on_postgresql():
        yield sqlite_url(directory, name)
        return
    url = create_database(empty=empty)
    try:
        yield url
    finally:
        drop_database(url)


@asynccontextmanager
async def fresh_database_async(
    directory: os.PathLike[str], *, name: str = "bot", empty: bool = False
) -> AsyncIterator[str]:
    """`fresh_database` for async code: the server work runs off the event loop."""
    if not on_postgresql():
        yield sqlite_url(directory, name)
        return
    url = await asyncio.to_thread(create_database, empty=empty)
    try:
        yield url
    finally:
        await asyncio.to_thread(drop_database, url)
