"""Engine and session factory, built once at start-up and passed down."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for the URL; SQLite gets foreign keys, WAL and a busy timeout."""
    is_sqlite = database_url.startswith("sqlite")
    # A server connection can drop between updates; a SQLite file cannot, and each ping there
    # is one more round trip to aiosqlite's thread on every update.
    engine = create_async_engine(
        database_url,
        pool_pre_ping=not is_sqlite,
        # Every session here ends in a commit or a rollback of its own, so the pool's extra
        # rollback on return is one more SQLite round trip that does nothing.
        pool_reset_on_return=None if is_sqlite else "rollback",
    )
    if is_sqlite:
        in_memory = engine.url.database in (None, "", ":memory:")
        event.listen(
            engine.sync_engine,
            "connect",
            _sqlite_pragmas_memory if in_memory else _sqlite_pragmas_file,
        )
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def casefold(text: object) -> object:
    """Python's case folding as an SQL function: SQLite's own lower() folds ASCII only."""
    return text.casefold() if isinstance(text, str) else text


def _sqlite_pragmas_memory(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("casefold", 1, casefold, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_pragmas_file(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("casefold", 1, casefold, deterministic=True)
    # WAL lets the command line read and write while the bot runs on the same file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
