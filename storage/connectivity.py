"""Telling a database outage from a bug, and waiting for the database to come back."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

# What asyncpg raises itself, unwrapped, while it connects to a server that is down, starting
# up, shutting down or full.
_ASYNCPG_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)

Sleep = Callable[[float], Awaitable[None]]


class DatabaseUnavailable(Exception):
    """The database did not answer within the time we wait for it."""


def is_outage(error: BaseException) -> bool:
    """Whether the error means the database (or the network to it) is away, not a bug.

    Such errors are worth trying again later: a restarting server, a dropped connection, a
    refused or timed-out connect, SQLite's "database is locked".
    """
    if isinstance(error, (OSError, TimeoutError, *_ASYNCPG_OUTAGES)):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    return False


def backoff_delays(first: float = 0.5, longest: float = 10.0) -> Callable[[int], float]:
    """The wait before retry number `attempt` (0-based): doubling from `first` up to `longest`."""

    def delay(attempt: int) -> float:
        return min(longest, first * 2.0 ** min(attempt, 30))

    return delay


async def wait_for_database(
    engine: AsyncEngine,
    *,
    patience: float = 60.0,
    first_delay: float = 0.5,
    longest_delay: float = 10.0,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Return once the database answers; retry outages with backoff for up to `patience` s.

    Raises DatabaseUnavailable when it has not answered by then; any other error (a wrong
    password, a missing database) is raised at once, as waiting would not cure it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = backoff_delays(first_delay, longest_delay)
    attempt = 0
    while True:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            if not is_outage(error):
                raise
            wait = delay(attempt)
            if loop.time() + wait > deadline:
                raise DatabaseUnavailable(describe_error(error)) from error
            logger.warning(
                "the database is unavailable (%s); trying again in %.1f s",
                describe_error(error),
                wait,
            )
            await sleep(wait)
            attempt += 1
            continue
        if attempt:
            logger.info("the database is available again")
        return


def describe_error(error: BaseException) -> str:
    """The error in one line for the log, without the SQL statement or its parameters."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".strip()
