"""What no other handler took: unknown commands, stray text, out-of-date buttons."""

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.ui import acknowledge


async def unknown_command(message: Message) -> None:
    """A command we do not have."""
    await message.answer(_("I don't know that command. /help lists what I can do."))


async def anything_else(message: Message) -> None:
    """Text or media outside a dialog."""
    await message.answer(_("I answer commands. /help lists them."))


async def stale_button(callback: CallbackQuery) -> None:
    """A button whose data no handler accepts: old, or not ours."""
    await acknowledge(callback, _("This button is out of date."), alert=True)


def create_router() -> Router:
    """The fallback handlers, on a router of their own for each dispatcher."""
    router = Router(name="fallback")
    router.message.filter(F.chat.type == ChatType.PRIVATE)
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(anything_else)
    router.callback_query.register(stale_button)
    return router
