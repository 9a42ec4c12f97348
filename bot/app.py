"""Building the bot and its dispatcher: everything is made once here and passed down."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC
from zoneinfo import ZoneInfo

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import LinkPreviewOptions
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.commands import routers
from bot.config import Settings
from bot.dedupe import install_dedupe
from bot.delivery import Courier, Pacer
from bot.errors import on_error
from bot.i18n import PersonLocaleMiddleware, create_i18n
from bot.jobs import TimedChanges
from bot.menu import register_commands
from bot.middlewares import PersonMiddleware, UnitOfWorkMiddleware
from bot.reachability import wait_for_telegram
from services.clock import Clock, utc_now
from services.sync import Syncer
from storage.connectivity import wait_for_database
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade

logger = logging.getLogger(__name__)

NOTICE_INTERVAL_SECONDS = 2
# How long a stopping bot lets the updates in hand finish (container runtimes usually allow
# about ten seconds between SIGTERM and SIGKILL).
DRAIN_SECONDS = 8.0
# A dialog left half-way is forgotten after this long (Redis only; memory forgets at restart).
DIALOG_TTL_SECONDS = 7 * 24 * 3600


def create_bot(settings: Settings) -> Bot:
    """The Bot client; every call goes to BOT_API_URL when one is set."""
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(settings.bot_api_url))
        if settings.bot_api_url
        else AiohttpSession()
    )
    return Bot(
        token=settings.require_token(),
        session=session,
        default=DefaultBotProperties(
            parse_mode=ParseMode.HTML, link_preview=LinkPreviewOptions(is_disabled=True)
        ),
    )


def create_storage(settings: Settings) -> BaseStorage:
    """Where dialogs keep their state: Redis when REDIS_URL is set, shared by every instance
    and kept across restarts; memory otherwise. Redis commands that meet a dropped connection
    are retried a few times with backoff before the update fails."""
    if settings.redis_url is None:
        return MemoryStorage()
    redis = Redis.from_url(
        settings.redis_url.get_secret_value(),
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
    )
    return RedisStorage(
        redis,
        # The bot's id in every key, so several bots can share one Redis.
        key_builder=DefaultKeyBuilder(prefix="branchbot", with_bot_id=True),
        state_ttl=DIALOG_TTL_SECONDS,
        data_ttl=DIALOG_TTL_SECONDS,
    )


def create_dispatcher(
    *,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock = utc_now,
    i18n: I18n | None = None,
    storage: BaseStorage | None = None,
    scheduler: AsyncIOScheduler | None = None,
) -> Dispatcher:
    """The dispatcher with its middlewares, routers, error handler and scheduled work."""
    i18n = i18n or create_i18n()
    scheduler = scheduler or AsyncIOScheduler(timezone=UTC)
    dispatcher = Dispatcher(
        storage=storage or MemoryStorage(),
        settings=settings,
        session_factory=session_factory,
        clock=clock,
        zone=settings.zone,
        i18n=i18n,
        scheduler=scheduler,
        pacer=Pacer(per_second=settings.send_rate),
    )

    unit_of_work = UnitOfWorkMiddleware(session_factory, clock)
    people = PersonMiddleware()
    locale = PersonLocaleMiddleware(i18n)
    for observer in (dispatcher.message, dispatcher.callback_query, dispatcher.my_chat_member):
        observer.middleware(unit_of_work)
        observer.middleware(people)
        observer.middleware(locale)

    install_dedupe(dispatcher, session_factory, clock)
    dispatcher.include_routers(*routers())
    dispatcher.errors.register(on_error)
    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(on_shutdown)
    return dispatcher


async def on_startup(
    dispatcher: Dispatcher,
    bot: Bot,
    i18n: I18n,
    scheduler: AsyncIOScheduler,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    pacer: Pacer,
    zone: ZoneInfo,
    settings: Settings,
) -> None:
    await register_commands(bot, i18n)
    courier = Courier(bot, session_factory, i18n, clock, pacer, zone)
    dispatcher["courier"] = courier
    await courier.recover()
    timed_changes = TimedChanges(session_factory, clock, courier)
    dispatcher["timed_changes"] = timed_changes
    # What fell due while the bot was down is owed (and sent) once, before anything else.
    await timed_changes.tick()
    scheduler.add_job(
        timed_changes.tick,
        "interval",
        seconds=settings.reminder_interval_seconds,
        id="timed-changes",
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    scheduler.add_job(
        courier.deliver_if_idle,
        "interval",
        seconds=NOTICE_INTERVAL_SECONDS,
        id="deliver-notices",
        # A long delivery takes up new notices itself; the next run only sees it is busy.
        max_instances=2,
        coalesce=True,
        replace_existing=True,
    )
    syncer = Syncer(session_factory, clock=clock)
    dispatcher["syncer"] = syncer
    scheduler.add_job(
        syncer.sync_all,
        "interval",
        minutes=settings.sync_interval_minutes,
        id="bitrix-sync",
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    scheduler.start()
    me = await bot.me()
    logger.info("bot @%s started", me.username)


async def on_shutdown(scheduler: AsyncIOScheduler, courier: Courier | None = None) -> None:
    if courier is not None:
        await courier.stop()
    if scheduler.running:
        scheduler.shutdown(wait=False)
    logger.info("bot stopped")


@dataclass
class Application:
    """What `branchbot run` runs; tests build the same object."""

    settings: Settings
    engine: AsyncEngine
    bot: Bot
    dispatcher: Dispatcher

    async def run_polling(self, *, handle_signals: bool = True) -> None:
        """Long polling until SIGINT or SIGTERM (or stop_polling), then a clean stop."""
        try:
            await wait_for_telegram(self.bot)
            await self.dispatcher.start_polling(
                self.bot,
                handle_signals=handle_signals,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
                polling_timeout=self.settings.polling_timeout,
                close_bot_session=False,
            )
        finally:
            await _finish_updates_in_hand(self.dispatcher)
            await self.bot.session.close()
            await self.dispatcher.storage.close()
            await self.engine.dispose()


async def _finish_updates_in_hand(dispatcher: Dispatcher) -> None:
    """Let the updates being handled when polling stopped finish before the session closes.

    Their ids are claimed already, so one cut short would be skipped when Telegram sends it
    again after the restart.
    """
    # aiogram keeps the tasks of the updates it is handling here while polling.
    in_hand = set(dispatcher._handle_update_tasks)
    if not in_hand:
        return
    _done, unfinished = await asyncio.wait(in_hand, timeout=DRAIN_SECONDS)
    if unfinished:
        # Limitation: an update still not done after DRAIN_SECONDS is cut short and lost.
        logger.warning("stopping with %s updates unfinished", len(unfinished))


async def build_application(settings: Settings, clock: Clock = utc_now) -> Application:
    """Bring the schema up to date and assemble the bot."""
    engine = create_engine(settings.database_url)
    try:
        await wait_for_database(engine)
        await upgrade(engine)
        dispatcher = create_dispatcher(
            settings=settings,
            session_factory=create_session_factory(engine),
            clock=clock,
            storage=create_storage(settings),
        )
    except BaseException:
        await engine.dispose()
        raise
    return Application(
        settings=settings, engine=engine, bot=create_bot(settings), dispatcher=dispatcher
    )
