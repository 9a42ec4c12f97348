"""A failing handler: the person gets a short apology, the log gets the traceback."""

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ui import is_not_modified, is_stale_query
from domain.language import language_for
from services.clock import Clock
from services.people import mark_unreachable, person_by_telegram_id

logger = logging.getLogger(__name__)


async def on_error(
    event: ErrorEvent,
    bot: Bot,
    i18n: I18n,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> bool:
    """Handle what a handler raised, so that the bot keeps serving everyone else."""
    error = event.exception
    update = event.update
    user = (
        update.message.from_user
        if update.message is not None
        else update.callback_query.from_user
        if update.callback_query is not None
        else None
    )

    if isinstance(error, TelegramBadRequest) and (is_not_modified(error) or is_stale_query(error)):
        logger.debug("update %s: %s", update.update_id, error.message)
        return True
    if isinstance(error, TelegramForbiddenError) and user is not None:
        logger.info("person %s cannot be reached: %s", user.id, error.message)
        async with session_factory() as session:
            await mark_unreachable(session, user.id, clock())
            await session.commit()
        return True

    logger.error("update %s failed", update.update_id, exc_info=error)
    if user is None:
        return True
    try:
        async with session_factory() as session:
            person = await person_by_telegram_id(session, user.id)
        language = language_for(person.language if person else None, user.language_code)
        with i18n.context(), i18n.use_locale(language):
            apology = _("Sorry, something went wrong. Please try again a little later.")
        if update.callback_query is not None:
            await bot.answer_callback_query(update.callback_query.id, apology, show_alert=True)
        else:
            await bot.send_message(user.id, apology)
    except Exception:
        # The apology itself failed (Telegram or the database is down): the log has the cause.
        logger.warning("could not tell person %s about a failure", user.id, exc_info=True)
    return True
