"""/help, /cancel and /language."""

from datetime import datetime

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter, Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, ChatMemberUpdated, Message
from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.keyboards import builders
from bot.keyboards.callbacks import LanguageTap, Noop
from bot.menu import help_lines
from bot.ui import acknowledge, show
from domain.language import LANGUAGES
from services.people import my_portals
from storage.models import Person


async def help_command(message: Message, session: AsyncSession, person: Person | None) -> None:
    """/help: what this person may do."""
    portals = await my_portals(session, person.id) if person is not None else []
    text = Text(Bold(_("What I can do")), "\n\n", "\n".join(help_lines(portals)))
    if not portals:
        text = Text(
            text, "\n\n", _("To get in, ask an administrator of your portal for an invite link.")
        )
    await message.answer(**text.as_kwargs())


async def cancel_command(message: Message, state: FSMContext) -> None:
    """/cancel: end any dialog in progress."""
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."))
        return
    await state.clear()
    await message.answer(_("Cancelled."))


async def language_command(message: Message) -> None:
    """/language: offer Russian and English."""
    await message.answer(
        _("Choose the language I answer you in:"), reply_markup=builders.languages()
    )


async def language_chosen(
    callback: CallbackQuery,
    callback_data: LanguageTap,
    person: Person | None,
    i18n: I18n,
) -> None:
    """Remember the language; strangers get it for this answer only, having no record."""
    if callback_data.code not in LANGUAGES:
        await acknowledge(callback, _("This button is out of date."), alert=True)
        return
    if person is not None:
        person.language = callback_data.code
    i18n.current_locale = callback_data.code
    await show(callback, Text(_("I will answer you in English.")))
    await acknowledge(callback)


async def label_button(callback: CallbackQuery) -> None:
    """Page numbers and other labels: nothing to do."""
    await acknowledge(callback)


async def bot_blocked(event: ChatMemberUpdated, person: Person | None, now: datetime) -> None:
    """The person blocked the bot: nothing more is sent to them until they return."""
    if person is not None:
        person.blocked_at = now


async def bot_unblocked(event: ChatMemberUpdated, person: Person | None, now: datetime) -> None:
    """The person started the bot again (or for the first time)."""
    if person is not None:
        person.blocked_at = None
        person.started_at = person.started_at or now


def create_router() -> Router:
    """The common handlers, on a router of their own for each dispatcher."""
    router = Router(name="common")
    router.message.register(help_command, Command("help"))
    router.message.register(cancel_command, Command("cancel"))
    router.message.register(language_command, Command("language"))
    router.callback_query.register(language_chosen, LanguageTap.filter())
    router.callback_query.register(label_button, Noop.filter())
    private = F.chat.type == ChatType.PRIVATE
    router.my_chat_member.register(bot_blocked, private, ChatMemberUpdatedFilter(KICKED))
    router.my_chat_member.register(bot_unblocked, private, ChatMemberUpdatedFilter(MEMBER))
    return router
