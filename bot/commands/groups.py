"""Group chats: no staff, structure or links there; a pointer to the private chat instead."""

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.keyboards import builders
from bot.menu import everyone_commands

SHARED_CHATS = {ChatType.GROUP, ChatType.SUPERGROUP, ChatType.CHANNEL}


async def group_help(message: Message, bot: Bot) -> None:
    """/help in a group: the commands, to use in the private chat."""
    me = await bot.me()
    await message.answer(
        "\n".join(f"/{name} — {description}" for name, description in everyone_commands())
        + "\n\n"
        + _("Portals, staff, structure and invites are shown only in a private chat with me."),
        reply_markup=builders.open_private_chat(me.username or ""),
    )


async def group_command(message: Message, bot: Bot) -> None:
    """Any other command in a group: a pointer to the private chat."""
    me = await bot.me()
    await message.answer(
        _("I show portals, staff, structure and invites only in a private chat."),
        reply_markup=builders.open_private_chat(me.username or ""),
    )


def create_router() -> Router:
    """The groups handlers, on a router of their own for each dispatcher."""
    router = Router(name="groups")
    router.message.filter(F.chat.type.in_(SHARED_CHATS))
    router.callback_query.filter(F.message.chat.type.in_(SHARED_CHATS))
    router.message.register(group_help, Command("help"))
    router.message.register(group_command, F.text.startswith("/"))
    return router
