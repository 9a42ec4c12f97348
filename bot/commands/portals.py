"""The portal list and the branch menu."""

from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import PortalAccess, member_access, refusal_text
from bot.keyboards import builders
from bot.keyboards.callbacks import PortalAction, PortalListPage, PortalTap
from bot.ui import acknowledge, show
from domain.rules import MenuItem, Refusal
from services.people import portals_page
from storage.models import Person


async def send_portal_list(
    event: Message | CallbackQuery, session: AsyncSession, person: Person | None, page: int = 0
) -> None:
    """The person's portals as buttons, a page at a time; a stranger is told how to get in."""
    if person is None:
        await show(event, views.portal_list([], None))
        return
    listing = await portals_page(session, person.id, page, builders.PORTALS_PER_PAGE)
    current_id = person.current_portal_id
    if current_id is None and listing.total == 1:
        current_id = listing.portals[0].id
    # Finding oneself by phone is offered only where some portal is linked to Bitrix24.
    offer_phone = bool(listing.portals) and listing.any_portal_linked
    markup = (
        builders.portal_list_page(listing, current_id, offer_phone=offer_phone)
        if listing.portals
        else None
    )
    await show(event, views.portal_list(listing.portals, current_id, listing.total), markup)


async def portals_command(message: Message, session: AsyncSession, person: Person | None) -> None:
    """/portals: the list of the person's portals."""
    await send_portal_list(message, session, person)


async def portal_list_page(
    callback: CallbackQuery,
    callback_data: PortalListPage,
    session: AsyncSession,
    person: Person | None,
) -> None:
    """A page of the portal list, or the way back to it."""
    await send_portal_list(callback, session, person, callback_data.page)
    await acknowledge(callback)


async def show_menu(
    event: Message | CallbackQuery, access: PortalAccess, person: Person, zone: ZoneInfo
) -> None:
    portal = access.portal
    back_page = (
        builders.page_of_portal(access.portals, portal.id)
        if access.position is None
        else builders.page_of_position(access.position)
    )
    await show(
        event,
        views.portal_card(portal, person.current_portal_id == portal.id, zone, access.head_name),
        builders.portal_menu(portal.id, portal.address, access.items, back_page),
    )


async def portal_menu(
    callback: CallbackQuery,
    callback_data: PortalTap,
    session: AsyncSession,
    person: Person | None,
    zone: ZoneInfo,
) -> None:
    """Open a portal's menu, or make it the current portal."""
    access = await member_access(session, person, callback_data.portal_id, with_position=True)
    if access is None or person is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return

    notice = None
    if callback_data.action is PortalAction.GO and MenuItem.GO in access.items:
        person.current_portal_id = access.portal.id
        notice = _("{name} is now your current portal.").format(name=access.portal.name)
    await show_menu(callback, access, person, zone)
    await acknowledge(callback, notice)


def create_router() -> Router:
    """The portals handlers, on a router of their own for each dispatcher."""
    router = Router(name="portals")
    router.message.register(portals_command, Command("portals"))
    router.callback_query.register(portal_list_page, PortalListPage.filter())
    router.callback_query.register(
        portal_menu, PortalTap.filter(F.action.in_({PortalAction.MENU, PortalAction.GO}))
    )
    return router
