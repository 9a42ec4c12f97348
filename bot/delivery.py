"""Sending what the outbox owes, within Telegram's limits, never losing a message."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notices import RENDERERS
from domain.language import language_for
from services.clock import Clock
from services.notices import params_of
from storage.models import Notice, Person

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class Pacer:
    """Keeps sends below a global rate and at most one a second to the same chat."""

    def __init__(
        self,
        per_second: float,
        per_chat_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self.per_chat_interval = per_chat_interval
        self.monotonic = monotonic
        self.sleep = sleep
        self.next_global = 0.0
        self.next_for_chat: dict[int, float] = {}

    async def wait(self, chat_id: int) -> None:
        now = self.monotonic()
        start = max(now, self.next_global, self.next_for_chat.get(chat_id, 0.0))
        self.next_global = start + self.interval
        self.next_for_chat[chat_id] = start + self.per_chat_interval
        if start > now:
            await self.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """Telegram asked us to wait (429): nobody is sent anything until then."""
        self.next_global = max(self.next_global, self.monotonic() + seconds)


class Courier:
    """Delivers the outbox; one per process, so two runs never send the same notice twice."""

    def __init__(
        self,
        bot: Bot,
        session_factory: async_sessionmaker[AsyncSession],
        i18n: I18n,
        clock: Clock,
        pacer: Pacer,
        zone: ZoneInfo | None = None,
    ) -> None:
        self.bot = bot
        self.session_factory = session_factory
        self.i18n = i18n
        self.clock = clock
        self.pacer = pacer
        self.zone = zone or ZoneInfo("UTC")
        self.lock = asyncio.Lock()

    async def deliver_due(self, batch: int = 200) -> int:
        """Send the notices that are due; returns how many were delivered."""
        async with self.lock:
            return await deliver_pending(
                self.bot, self.session_factory, self.i18n, self.clock, self.pacer, batch, self.zone
            )


async def deliver_pending(
    bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
    i18n: I18n,
    clock: Clock,
    pacer: Pacer,
    batch: int = 200,
    zone: ZoneInfo | None = None,
) -> int:
    """Send the notices that are due; returns how many were delivered."""
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(Notice, Person)
                .join(Person, Person.id == Notice.person_id)
                .where(Notice.status == "pending", Notice.not_before <= clock())
                .order_by(Notice.id)
                .limit(batch)
            )
        ).all()

        delivered = 0
        for notice, person in rows:
            if await _deliver_one(
                bot, session, i18n, clock, pacer, notice, person, zone or ZoneInfo("UTC")
            ):
                delivered += 1
            await session.commit()
    return delivered


async def _deliver_one(
    bot: Bot,
    session: AsyncSession,
    i18n: I18n,
    clock: Clock,
    pacer: Pacer,
    notice: Notice,
    person: Person,
    zone: ZoneInfo,
) -> bool:
    if person.telegram_id is None or person.started_at is None or person.blocked_at is not None:
        notice.status = "unreachable"
        notice.last_error = "has not started the bot" if person.blocked_at is None else "blocked"
        return False
    renderer = RENDERERS.get(notice.kind)
    if renderer is None:
        notice.status = "failed"
        notice.last_error = f"no text for notice kind {notice.kind!r}"
        logger.error("notice %s has unknown kind %s", notice.id, notice.kind)
        return False

    with i18n.context(), i18n.use_locale(language_for(person.language, person.telegram_language)):
        content = renderer(params_of(notice), zone)
    while True:
        await pacer.wait(person.telegram_id)
        notice.attempts += 1
        try:
            await bot.send_message(person.telegram_id, **content.as_kwargs())
        except TelegramRetryAfter as error:
            # The message is kept and sent again once Telegram's wait is over.
            logger.warning("Telegram asks to wait %s s before sending more", error.retry_after)
            pacer.hold(error.retry_after)
            continue
        except TelegramForbiddenError as error:
            notice.status = "unreachable"
            notice.last_error = error.message
            person.blocked_at = clock()
            logger.info("person %s blocked the bot; notice %s dropped", person.id, notice.id)
            return False
        except TelegramBadRequest as error:
            notice.status = "unreachable" if "chat not found" in error.message else "failed"
            notice.last_error = error.message
            logger.warning("notice %s refused: %s", notice.id, error.message)
            return False
        except (TelegramNetworkError, TelegramServerError) as error:
            _retry_later(notice, clock(), str(error))
            return False
        notice.status = "sent"
        notice.sent_at = clock()
        return True


def _retry_later(notice: Notice, now: datetime, reason: str) -> None:
    notice.last_error = reason
    if notice.attempts >= MAX_ATTEMPTS:
        notice.status = "failed"
        logger.error("notice %s failed %s times: %s", notice.id, notice.attempts, reason)
        return
    notice.not_before = now + timedelta(seconds=min(3600, 5 * 2**notice.attempts))
    logger.warning("notice %s will be retried: %s", notice.id, reason)
