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
from bot.keyboards.callbacks import (
    PortalAction,
    PortalTap,
    SearchPageTap,
    StaffPageTap,
    search_travels,
)
from bot.ui import acknowledge, show
from domain.rules import MenuItem, Refusal
from services.directory import staff_page
from services.searches import MAX_SEARCH_LENGTH, recall_search, remember_search
from storage.models import Person


async def show_staff(
    event: Message | CallbackQuery,
    session: AsyncSession,
    access: PortalAccess,
    person: Person,
    page: int,
    search: str | None,
    query_id: int,
    now: datetime,
) -> None:
    listing = await staff_page(session, access.portal.id, page, search)
    carried = None
    if search is not None and listing.pages > 1 and not query_id:
        if search_travels(access.portal.id, listing.pages, search):
            carried = search
        else:
            # Too long for callback data: kept on the server, and the pages name it by id.
            # Limitation: each later page of such a search costs a statement more (its recall).
            query_id = await remember_search(session, person.id, access.portal.id, search, now)
    await show(
        event,
        views.staff_page(access.portal.name, listing, search),
        builders.staff_pages(access.portal.id, listing.page, listing.pages, query_id, carried),
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

    search = (command.args or "").strip()[:MAX_SEARCH_LENGTH] or None
    await show_staff(message, session, access, person, 0, search, 0, now)


async def staff_from_menu(
    callback: CallbackQuery,
    callback_data: PortalTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """The staff item of the branch menu."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None or MenuItem.STAFF not in access.items:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    if person.current_portal_id is None:
        person.current_portal_id = access.portal.id
    await show_staff(callback, session, access, person, 0, None, 0, now)
    await acknowledge(callback)


async def staff_page_tap(
    callback: CallbackQuery,
    callback_data: StaffPageTap | SearchPageTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """Another page of the staff list, or of a search: by its text in the button, or its id."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return

    search, query_id = None, 0
    if isinstance(callback_data, SearchPageTap):
        # The text is as untrusted as any typed search, and searched for in the same way.
        search = callback_data.text.strip()[:MAX_SEARCH_LENGTH] or None
    elif callback_data.query_id:
        query_id = callback_data.query_id
        search = await recall_search(session, query_id, person.id, access.portal.id)
        if search is None:
            await acknowledge(callback, _("This search is out of date: run it again."), True)
            return
    await show_staff(callback, session, access, person, callback_data.page, search, query_id, now)
    await acknowledge(callback)


def create_router() -> Router:
    """The staff handlers, on a router of their own for each dispatcher."""
    router = Router(name="staff")
    router.message.register(staff_command, Command("staff"))
    router.callback_query.register(
        staff_from_menu, PortalTap.filter(F.action == PortalAction.STAFF)
    )
    router.callback_query.register(staff_page_tap, StaffPageTap.filter())
    router.callback_query.register(staff_page_tap, SearchPageTap.filter())
    return router
