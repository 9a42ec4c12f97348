"""/structure: a portal's departments as a text tree, in pages within Telegram's limit."""

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import PortalAccess, current_access, member_access, refusal_text
from bot.commands.choose import current_or_ask
from bot.keyboards import builders
from bot.keyboards.callbacks import PortalAction, PortalTap, StructurePageTap
from bot.ui import acknowledge, show
from domain.rules import MenuItem, Refusal
from services.directory import structure
from storage.models import Person


async def show_structure(
    event: Message | CallbackQuery, session: AsyncSession, access: PortalAccess, page: int
) -> None:
    tree = await structure(session, access.portal.id, access.portal.structure_version)
    text, pages = views.structure_page(access.portal.name, tree, page)
    page = min(max(page, 0), pages - 1)
    await show(event, text, builders.structure_pages(access.portal.id, page, pages))


async def structure_command(
    message: Message, session: AsyncSession, person: Person | None
) -> None:
    """/structure: the current portal's departments."""
    access = await current_access(session, person) or await current_or_ask(
        message, session, person, PortalAction.STRUCTURE
    )
    if access is not None:
        await show_structure(message, session, access, 0)


async def structure_from_menu(
    callback: CallbackQuery, callback_data: PortalTap, session: AsyncSession, person: Person | None
) -> None:
    """The structure item of the branch menu."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None or MenuItem.STRUCTURE not in access.items:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    if person.current_portal_id is None:
        person.current_portal_id = access.portal.id
    await show_structure(callback, session, access, 0)
    await acknowledge(callback)


async def structure_page(
    callback: CallbackQuery,
    callback_data: StructurePageTap,
    session: AsyncSession,
    person: Person | None,
) -> None:
    """Another page of the structure."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    await show_structure(callback, session, access, callback_data.page)
    await acknowledge(callback)


def create_router() -> Router:
    """The structure handlers, on a router of their own for each dispatcher."""
    router = Router(name="structure")
    router.message.register(structure_command, Command("structure"))
    router.callback_query.register(
        structure_from_menu, PortalTap.filter(F.action == PortalAction.STRUCTURE)
    )
    router.callback_query.register(structure_page, StructurePageTap.filter())
    return router
