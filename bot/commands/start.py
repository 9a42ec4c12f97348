"""/start: the greeting and the portal list; /start <token> opens an invite."""

import logging
from datetime import datetime

from aiogram import Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands.portals import send_portal_list
from services.invites import Redeemed, TelegramIdentity, redeem
from services.people import display_name
from storage.models import Person

logger = logging.getLogger(__name__)


async def start_with_invite(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """/start <token>: join or link through an invite, then the portal list."""
    user = message.from_user
    if user is None:
        return
    who = TelegramIdentity(
        telegram_id=user.id,
        name=display_name(user.first_name, user.last_name),
        username=user.username,
        language_code=user.language_code,
    )
    result = await redeem(session, command.args or "", who=who, person=person, now=now)

    if result.outcome in (Redeemed.JOINED, Redeemed.LINKED) and result.portal is not None:
        logger.info("person %s joined portal %s by invite", user.id, result.portal.address)
        await message.answer(**Text(_("Welcome to "), Bold(result.portal.name), "!").as_kwargs())
    elif result.outcome is Redeemed.ALREADY_MEMBER and result.portal is not None:
        await message.answer(
            **Text(
                _("You are already on the staff of "), Bold(result.portal.name), "."
            ).as_kwargs()
        )
    else:
        refusals = {
            Redeemed.USED: _("This invite link has already been used."),
            Redeemed.EXPIRED: _("This invite link has expired."),
            Redeemed.REVOKED: _("This invite link was revoked."),
            Redeemed.UNKNOWN: _("This invite link is not valid."),
        }
        await message.answer(
            refusals.get(result.outcome, refusals[Redeemed.UNKNOWN])
            + " "
            + _("Ask the administrator for a new one.")
        )
    await send_portal_list(message, session, result.person or person)


async def start(message: Message, session: AsyncSession, person: Person | None) -> None:
    """/start: a greeting and the person's portals."""
    await message.answer(
        _("Hello! I show the portals of your company's network and help you move between them.")
        + "\n"
        + _("/help lists what you can do.")
    )
    await send_portal_list(message, session, person)


def create_router() -> Router:
    """The start handlers, on a router of their own for each dispatcher."""
    router = Router(name="start")
    router.message.register(start_with_invite, CommandStart(deep_link=True))
    router.message.register(start, CommandStart())
    return router
