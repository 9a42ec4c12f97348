"""Showing a screen from a message or a tap, the way Telegram's quirks require."""

import logging

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.formatting import Text

logger = logging.getLogger(__name__)


def is_not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


def is_stale_query(error: TelegramBadRequest) -> bool:
    return "query is too old" in error.message or "query ID is invalid" in error.message


async def show(
    event: Message | CallbackQuery,
    content: Text,
    markup: InlineKeyboardMarkup | None = None,
) -> None:
    """Answer a command with a new message, or a tap by editing the message it came from.

    A tap on a message the bot can no longer edit (too old, inaccessible) gets a new message
    instead; tapping the same button twice is not an error.
    """
    if isinstance(event, Message):
        await event.answer(**content.as_kwargs(), reply_markup=markup)
        return

    message = event.message
    if isinstance(message, Message):
        try:
            await message.edit_text(**content.as_kwargs(), reply_markup=markup)
        except TelegramBadRequest as error:
            if is_not_modified(error):
                return
            if "message to edit not found" not in error.message and (
                "message can't be edited" not in error.message
            ):
                raise
        else:
            return
    await event.bot.send_message(  # type: ignore[union-attr]
        chat_id=event.from_user.id, **content.as_kwargs(), reply_markup=markup
    )


async def acknowledge(
    callback: CallbackQuery, text: str | None = None, alert: bool = False
) -> None:
    """Stop the button's spinner; a query Telegram already forgot is no failure of ours."""
    try:
        await callback.answer(text=text, show_alert=alert)
    except TelegramBadRequest as error:
        if not is_stale_query(error):
            raise
        logger.debug("callback query %s was stale", callback.id)
