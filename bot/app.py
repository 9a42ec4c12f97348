"""Building the bot and its dispatcher: everything is made once here and passed down."""

import logging
from dataclasses import dataclass
from datetime import UTC
from zoneinfo import ZoneInfo

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import LinkPreviewOptions
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.commands import routers
from bot.config import Settings
from bot.delivery import Courier, Pacer
from bot.errors import on_error
from bot.i18n import PersonLocaleMiddleware, create_i18n
from bot.menu import register_commands
from bot.middlewares import PersonMiddleware, UnitOfWorkMiddleware
from services.clock import Clock, utc_now
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade

logger = logging.getLogger(__name__)

NOTICE_INTERVAL_SECONDS = 2


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
) -> None:
    await register_commands(bot, i18n)
    courier = Courier(bot, session_factory, i18n, clock, pacer, zone)
    dispatcher["courier"] = courier
    scheduler.add_job(
        courier.deliver_due,
        "interval",
        seconds=NOTICE_INTERVAL_SECONDS,
        id="deliver-notices",
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    scheduler.start()
    me = await bot.me()
    logger.info("bot @%s started", me.username)


async def on_shutdown(scheduler: AsyncIOScheduler) -> None:
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
            await self.dispatcher.start_polling(
                self.bot,
                handle_signals=handle_signals,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
                polling_timeout=self.settings.polling_timeout,
            )
        finally:
            await self.engine.dispose()


async def build_application(settings: Settings, clock: Clock = utc_now) -> Application:
    """Bring the schema up to date and assemble the bot."""
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        dispatcher = create_dispatcher(
            settings=settings, session_factory=create_session_factory(engine), clock=clock
        )
    except BaseException:
        await engine.dispose()
        raise
    return Application(
        settings=settings, engine=engine, bot=create_bot(settings), dispatcher=dispatcher
    )
