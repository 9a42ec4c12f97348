"""Each Telegram update is handled once, however many times and to whichever instance it comes.

Telegram sends an update again when it got no answer in time (a slow or restarting instance,
a lost response), and behind a load balancer the copy can reach another instance. Before an
update is handled its id is claimed in the database: one insert that the unique key lets only
one instance win. The claim is committed before handling starts, so a copy that arrives while
the first is still being handled is skipped too.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.types import TelegramObject, Update
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clock import Clock
from services.searches import forget_old_searches
from storage.connectivity import backoff_delays, describe_error, is_outage
from storage.models import ProcessedUpdate

logger = logging.getLogger(__name__)

# Telegram keeps an update for at most 24 hours, so no copy can come later than that; and ids
# may restart at random after a week without updates, so they must be forgotten before then.
RETENTION = timedelta(hours=48)
PRUNE_INTERVAL_SECONDS = 3600
# Set in the handling data by a caller that has claimed the update already (the webhook).
CLAIMED = "update_claimed"
# While polling, a claim that meets a database outage is tried again for about 7 seconds.
CLAIM_ATTEMPTS = 4

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


async def claim_update(
    session_factory: async_sessionmaker[AsyncSession], update_id: int, now: datetime
) -> bool:
    """Record the update as taken; False when it was taken before (here or elsewhere)."""
    async with session_factory() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(ProcessedUpdate)
            .values(update_id=update_id, received_at=now)
            .on_conflict_do_nothing(index_elements=[ProcessedUpdate.update_id])
        )
        result = await session.execute(statement)
        await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def prune_updates(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Forget the ids of updates older than RETENTION, and searches older than their lifetime.

    Returns how many update ids were forgotten. Old searches go here, in the hourly job, rather
    than as each new search is stored, which would cost a statement in that update.
    """
    async with session_factory() as session:
        result = await session.execute(
            delete(ProcessedUpdate).where(ProcessedUpdate.received_at < now - RETENTION)
        )
        await forget_old_searches(session, now)
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


class DedupeMiddleware(BaseMiddleware):
    """An outer middleware on updates: a copy of an update already taken is not handled."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.session_factory = session_factory
        self.clock = clock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Update) or data.get(CLAIMED):
            return await handler(event, data)
        if not await self._claim(event.update_id):
            logger.info("update %s came again; it was handled already", event.update_id)
            return None
        return await handler(event, data)

    async def _claim(self, update_id: int) -> bool:
        delay = backoff_delays(first=1.0)
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                return await claim_update(self.session_factory, update_id, self.clock())
            except Exception as error:
                if not is_outage(error) or attempt == CLAIM_ATTEMPTS - 1:
                    raise
                logger.warning(
                    "update %s waits for the database (%s)", update_id, describe_error(error)
                )
                await asyncio.sleep(delay(attempt))
        raise AssertionError("unreachable")


class UpdatePruner:
    """The scheduled job that forgets old update ids and old searches."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.session_factory = session_factory
        self.clock = clock

    async def tick(self) -> None:
        try:
            forgotten = await prune_updates(self.session_factory, self.clock())
        except Exception as error:
            if not is_outage(error):
                raise
            logger.warning(
                "could not prune handled update ids (%s); trying again later",
                describe_error(error),
            )
            return
        if forgotten:
            logger.debug("forgot %s handled update ids", forgotten)


def install_dedupe(
    dispatcher: Dispatcher, session_factory: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    """Claim every update before it is handled; prune old claims and searches every hour."""
    dispatcher.update.outer_middleware(DedupeMiddleware(session_factory, clock))
    pruner = UpdatePruner(session_factory, clock)

    async def schedule_pruning(scheduler: AsyncIOScheduler) -> None:
        scheduler.add_job(
            pruner.tick,
            "interval",
            seconds=PRUNE_INTERVAL_SECONDS,
            id="prune-updates",
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    dispatcher.startup.register(schedule_pruning)
