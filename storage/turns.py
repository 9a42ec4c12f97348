"""Work that must not run in two places at once, however many instances share the database."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Keys of the work that takes turns (any fixed numbers, distinct from storage.migrate's).
TIMED_CHANGES = 0x74696D6564  # "timed"


async def take_turn(session: AsyncSession, key: int) -> bool:
    """Begin the session's transaction as the only one doing this work; False when another
    instance is doing it right now (the caller then leaves it to that one).

    On PostgreSQL: a transaction-level advisory lock, tried without waiting, and given back at
    commit or rollback. On SQLite: BEGIN IMMEDIATE takes the one write lock at once (waiting
    up to the busy timeout), so the transaction reads everything written before it and nobody
    else writes until it ends. Call it before anything else in the session.
    """
    if session.get_bind().dialect.name == "postgresql":
        taken = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
        return bool(taken)
    await session.execute(text("BEGIN IMMEDIATE"))
    return True
