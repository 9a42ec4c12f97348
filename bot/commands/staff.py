"""/staff: a portal's staff list, paged, with search by part of a name."""

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import PortalAccess, current_access, member_access, refusal_text
from bot.commands.choose import current_or_ask
from bot.keyboards import builders
from bot.keyboards.callbacks import PortalAction, PortalTap, StaffPageTap
from bot.ui import acknowledge, show
from domain.rules import MenuItem, Refusal
from services.directory import staff_page
from services.searches import recall_search, remember_search
from storage.models import Person


async def show_staff(
    event: Message | CallbackQuery,
    session: AsyncSession,
    access: PortalAccess,
    page: int,
    search: str | None,
    query_id: int,
) -> None:
    listing = await staff_page(session, access.portal.id, page, search)
    await show(
        event,
        views.staff_page(access.portal.name, listing, search),
        builders.staff_pages(access.portal.id, listing.page, listing.pages, query_id),
    )


async def staff_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """/staff [part of a name]: the current portal's staff, or the people found."""
    access = await current_access(session, person) or await current_or_ask(
        message, session, person, PortalAction.STAFF
    )
    if access is None or person is None:
        return

    search = (command.args or "").strip() or None
    query_id = 0
    if search is not None:
        query_id = await remember_search(session, person.id, access.portal.id, search, now)
    await show_staff(message, session, access, 0, search, query_id)


async def staff_from_menu(
    callback: CallbackQuery, callback_data: PortalTap, session: AsyncSession, person: Person | None
) -> None:
    """The staff item of the branch menu."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None or MenuItem.STAFF not in access.items:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    if person.current_portal_id is None:
        person.current_portal_id = access.portal.id
    await show_staff(callback, session, access, 0, None, 0)
    await acknowledge(callback)


async def staff_page_tap(
    callback: CallbackQuery,
    callback_data: StaffPageTap,
    session: AsyncSession,
    person: Person | None,
) -> None:
    """Another page of the staff list or of a search."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return

    search = None
    if callback_data.query_id:
        search = await recall_search(session, callback_data.query_id, person.id, access.portal.id)
        if search is None:
            await acknowledge(callback, _("This search is out of date: run it again."), True)
            return
    await show_staff(callback, session, access, callback_data.page, search, callback_data.query_id)
    await acknowledge(callback)


def create_router() -> Router:
    """The staff handlers, on a router of their own for each dispatcher."""
    router = Router(name="staff")
    router.message.register(staff_command, Command("staff"))
    router.callback_query.register(
        staff_from_menu, PortalTap.filter(F.action == PortalAction.STAFF)
    )
    router.callback_query.register(staff_page_tap, StaffPageTap.filter())
    return router
