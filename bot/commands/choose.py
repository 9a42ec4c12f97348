"""Finding the portal a one-portal command acts on, or asking the person to choose."""

from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import PortalAccess, access_among, resolve_current
from bot.keyboards import builders
from bot.keyboards.callbacks import PortalAction
from services.people import my_portals
from storage.models import Person


async def current_or_ask(
    message: Message, session: AsyncSession, person: Person | None, action: PortalAction
) -> PortalAccess | None:
    """Access to the current portal; otherwise the person is answered and None returned."""
    portals = await my_portals(session, person.id) if person is not None else []
    if person is None or not portals:
        await message.answer(**views.portal_list([], None).as_kwargs())
        return None

    current = resolve_current(person, portals)
    if current is None:
        await message.answer(
            _("Which portal? Your choice becomes your current portal."),
            reply_markup=builders.choose_portal(portals, action),
        )
        return None
    return access_among(portals, current.id)
