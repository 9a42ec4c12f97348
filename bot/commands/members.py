"""/members: a portal's admins manage its staff: roles, removal, unlinking Telegram accounts.

Every tap re-reads the admin's rights and the person's membership; a removed or unlinked person
loses access on their next tap, because every handler reads rights from the database.
"""

from datetime import datetime

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.formatting import Bold, Italic, Text
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import refusal_text, resolve_current
from bot.keyboards import network as keyboards
from bot.keyboards.callbacks import MemberAction, MemberChange, MemberTap
from bot.ui import acknowledge, show
from domain.rules import Refusal, Role
from services import network
from services.network import MemberRow
from services.people import my_portals
from storage.models import Person, Portal


async def members_command(message: Message, session: AsyncSession, person: Person | None) -> None:
    """/members: the current portal's people, to manage; admins only."""
    portals = await my_portals(session, person.id) if person is not None else []
    if person is None or not portals:
        await message.answer(**views.portal_list([], None).as_kwargs())
        return

    current = resolve_current(person, portals)
    if current is None:
        managed = [(item.id, item.name) for item in portals if item.role is Role.ADMIN]
        if not managed:
            await message.answer(refusal_text(Refusal.NOT_ADMIN))
            return
        await message.answer(
            _("Whose staff do you manage?"), reply_markup=keyboards.choose_staff_portal(managed)
        )
        return
    if current.role is not Role.ADMIN:
        await message.answer(refusal_text(Refusal.NOT_ADMIN))
        return
    portal = await session.get(Portal, current.id)
    assert portal is not None
    await show_members(message, session, portal, 0)


async def show_members(
    event: Message | CallbackQuery, session: AsyncSession, portal: Portal, page: int
) -> None:
    listing = await network.members_page(session, portal.id, page)
    header: list[str | Text] = [
        Bold(portal.name),
        " · ",
        ngettext(
            "{count} person on the staff", "{count} people on the staff", listing.total
        ).format(count=listing.total),
    ]
    if listing.pages > 1:
        header.append(
            " · " + _("page {page} of {pages}").format(page=listing.page + 1, pages=listing.pages)
        )
    text = Text(
        *header,
        "\n\n",
        _("Tap a person to change their role, remove them or unlink their Telegram account."),
        "\n",
        Italic(_("⭐ administrator · ⛓ Telegram not linked")),
    )
    await show(
        event, text, keyboards.members_page(portal.id, listing.rows, listing.page, listing.pages)
    )


async def managed_portal(
    callback: CallbackQuery, session: AsyncSession, person: Person | None, portal_id: int
) -> Portal | None:
    """The portal a button names, if the person administers it now; otherwise they are told."""
    refusal = await network.may_manage(session, person, portal_id)
    portal = await session.get(Portal, portal_id) if refusal is None else None
    if portal is None:
        await acknowledge(callback, refusal_text(refusal or Refusal.NOT_VISIBLE), alert=True)
    return portal


async def member_step(
    callback: CallbackQuery,
    callback_data: MemberTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """The list, a person's card, the question before a change, the change."""
    portal = await managed_portal(callback, session, person, callback_data.portal_id)
    if portal is None or person is None:
        return
    if callback_data.action is MemberAction.LIST:
        await show_members(callback, session, portal, callback_data.page)
        await acknowledge(callback)
        return

    row = await network.member_card(session, portal.id, callback_data.person_id)
    if row is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_A_MEMBER), alert=True)
        await show_members(callback, session, portal, callback_data.page)
        return
    is_self = row.person_id == person.id
    change = callback_data.change

    if callback_data.action is MemberAction.CARD or change is MemberChange.NONE:
        await show(
            callback,
            member_text(portal, row),
            keyboards.member_card(portal.id, row, callback_data.page, is_self=is_self),
        )
    elif callback_data.action is MemberAction.ASK:
        await show(
            callback,
            question_text(portal, row, change),
            keyboards.confirm_member_change(portal.id, row.person_id, change, callback_data.page),
        )
    else:
        await apply_change(callback, session, person, portal, row, change, callback_data.page, now)
        return
    await acknowledge(callback)


async def apply_change(
    callback: CallbackQuery,
    session: AsyncSession,
    person: Person,
    portal: Portal,
    row: MemberRow,
    change: MemberChange,
    page: int,
    now: datetime,
) -> None:
    if change is MemberChange.REMOVE:
        done = await network.remove_member(
            session, actor=person, portal=portal, person_id=row.person_id, now=now
        )
    elif change is MemberChange.UNLINK:
        done = await network.unlink_account(
            session, actor=person, portal=portal, person_id=row.person_id, now=now
        )
    else:
        role = Role.ADMIN if change is MemberChange.MAKE_ADMIN else Role.EMPLOYEE
        done = await network.set_role(
            session, actor=person, portal=portal, person_id=row.person_id, role=role, now=now
        )
    if isinstance(done, Refusal):
        await acknowledge(callback, refusal_text(done), alert=True)
        return

    texts = {
        MemberChange.REMOVE: _("is no longer on the staff of"),
        MemberChange.UNLINK: _("no longer has a Telegram account linked on"),
        MemberChange.MAKE_ADMIN: _("is now an administrator of"),
        MemberChange.MAKE_EMPLOYEE: _("is now an employee of"),
    }
    await show(
        callback,
        Text(
            "✅ " if done else "",
            Bold(row.name),
            " ",
            texts[change],
            " ",
            Bold(portal.name),
            ".",
            "" if done else "\n" + _("It was so already."),
        ),
        keyboards.back_to_members(portal.id, page),
    )
    await acknowledge(callback, _("Done.") if done else None)


def member_text(portal: Portal, row: MemberRow) -> Text:
    if not row.linked:
        telegram = _("Telegram: not linked; an invite link for them links it.")
    elif not row.reachable:
        telegram = _("Telegram: linked, but they have not started the bot (unreachable).")
    else:
        telegram = _("Telegram: linked.")
    return Text(
        Bold(row.name),
        "\n",
        _("Role: {role}").format(role=views.role_name(row.role)),
        "\n",
        telegram,
        "\n\n",
        _("On the staff of "),
        Bold(portal.name),
    )


def question_text(portal: Portal, row: MemberRow, change: MemberChange) -> Text:
    if change is MemberChange.REMOVE:
        return Text(
            _("Remove "),
            Bold(row.name),
            _(" from the staff of "),
            Bold(portal.name),
            "?\n",
            _("They lose access to this portal at once."),
        )
    if change is MemberChange.UNLINK:
        return Text(
            _("Unlink the Telegram account of "),
            Bold(row.name),
            "?\n",
            _(
                "They stay on the staff, but can no longer use the bot, on any portal, until "
                "their account is linked again."
            ),
        )
    if change is MemberChange.MAKE_ADMIN:
        return Text(_("Make "), Bold(row.name), _(" an administrator of "), Bold(portal.name), "?")
    return Text(_("Make "), Bold(row.name), _(" an employee of "), Bold(portal.name), "?")


def create_router() -> Router:
    """The staff management handlers, on a router of their own for each dispatcher."""
    router = Router(name="members")
    router.message.filter(F.chat.type == ChatType.PRIVATE)
    router.message.register(members_command, Command("members"))
    router.callback_query.register(member_step, MemberTap.filter())
    return router
