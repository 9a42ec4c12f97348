"""/invite: invite links for a portal's admins, with a role and a department; list and revoke."""

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.deep_linking import create_start_link
from aiogram.utils.formatting import Bold, Code, Text
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import PortalAccess, member_access, refusal_text
from bot.commands.choose import current_or_ask
from bot.config import Settings
from bot.keyboards import builders
from bot.keyboards.callbacks import InviteAction, InviteTap, PortalAction, PortalTap
from bot.ui import acknowledge, show
from domain.rules import MenuItem, Refusal, Role
from services import invites
from storage.models import Department, Person, Portal

logger = logging.getLogger(__name__)


async def admin_access(
    session: AsyncSession, person: Person | None, portal_id: int
) -> PortalAccess | Refusal:
    access = await member_access(session, person, portal_id)
    if access is None:
        return Refusal.NOT_VISIBLE
    if MenuItem.INVITE not in access.items:
        return Refusal.NOT_ADMIN
    return access


async def show_invite_start(
    event: Message | CallbackQuery, session: AsyncSession, access: PortalAccess, now: datetime
) -> None:
    open_count = len(await invites.open_invites(session, access.portal.id, now))
    await show(
        event,
        Text(
            _("Invite people to "),
            Bold(access.portal.name),
            "\n\n",
            _("Choose the role the invited person gets. Each link works once."),
        ),
        builders.invite_roles(access.portal.id, open_count),
    )


async def invite_command(
    message: Message, session: AsyncSession, person: Person | None, now: datetime
) -> None:
    """/invite: start making an invite link for the current portal."""
    access = await current_or_ask(message, session, person, PortalAction.INVITE)
    if access is None:
        return
    if MenuItem.INVITE not in access.items:
        await message.answer(refusal_text(Refusal.NOT_ADMIN))
        return
    await show_invite_start(message, session, access, now)


async def invite_from_menu(
    callback: CallbackQuery,
    callback_data: PortalTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """The invite item of the branch menu."""
    access = await admin_access(session, person, callback_data.portal_id)
    if isinstance(access, Refusal):
        await acknowledge(callback, refusal_text(access), alert=True)
        return
    if person is not None and person.current_portal_id is None:
        person.current_portal_id = access.portal.id
    await show_invite_start(callback, session, access, now)
    await acknowledge(callback)


async def invite_step(
    callback: CallbackQuery,
    callback_data: InviteTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
    bot: Bot,
    settings: Settings,
    zone: ZoneInfo,
) -> None:
    """Every step after the first: role, department, the link, the list, revoking."""
    access = await admin_access(session, person, callback_data.portal_id)
    if isinstance(access, Refusal) or person is None:
        refusal = access if isinstance(access, Refusal) else Refusal.NOT_VISIBLE
        await acknowledge(callback, refusal_text(refusal), alert=True)
        return

    action = callback_data.action
    if action is InviteAction.NEW:
        await show_invite_start(callback, session, access, now)
    elif action in (InviteAction.ROLE, InviteAction.DEPARTMENT):
        if callback_data.role not in {role.value for role in Role}:
            await acknowledge(callback, _("This button is out of date."), alert=True)
            return
        role = Role(callback_data.role)
        departments = await invites.departments_of(session, access.portal.id)
        if action is InviteAction.ROLE and departments:
            await show(
                callback,
                Text(_("Which department will the invited person be in?")),
                builders.invite_departments(
                    access.portal.id, role, departments, callback_data.value
                ),
            )
        else:
            department = _department(departments, callback_data.value)
            if callback_data.value and department is None:
                await acknowledge(callback, _("That department no longer exists."), alert=True)
                return
            await _make_invite(
                callback, session, access, person, role, department, now, bot, settings, zone
            )
    elif action is InviteAction.LIST:
        await _show_open_invites(callback, session, access, now, zone)
    elif action is InviteAction.REVOKE:
        portal = await session.get(Portal, access.portal.id)
        assert portal is not None
        revoked = await invites.revoke_invite(
            session, invite_id=callback_data.value, portal=portal, actor=person, now=now
        )
        await _show_open_invites(callback, session, access, now, zone)
        await acknowledge(
            callback,
            _("The invite is revoked.") if revoked else _("That invite was no longer open."),
        )
        return
    await acknowledge(callback)


def _department(departments: list[Department], department_id: int) -> Department | None:
    return next((item for item in departments if item.id == department_id), None)


async def _make_invite(
    callback: CallbackQuery,
    session: AsyncSession,
    access: PortalAccess,
    person: Person,
    role: Role,
    department: Department | None,
    now: datetime,
    bot: Bot,
    settings: Settings,
    zone: ZoneInfo,
) -> None:
    portal = await session.get(Portal, access.portal.id)
    assert portal is not None
    invite = await invites.create_invite(
        session,
        portal=portal,
        creator=person,
        role=role,
        department_id=department.id if department is not None else None,
        now=now,
        ttl=settings.invite_ttl,
    )
    link = await create_start_link(bot, invite.token)
    logger.info("invite %s made for portal %s", invite.id, portal.address)

    details = [_("Role: {role}").format(role=views.role_name(role))]
    if department is not None:
        details.append(_("Department: {name}").format(name=department.name))
    details.append(
        _("Valid until {moment}, for one person.").format(
            moment=views.instant(invite.expires_at, zone)
        )
    )
    await show(
        callback,
        Text(
            _("Invite link to "),
            Bold(portal.name),
            "\n\n",
            Code(link),
            "\n\n",
            "\n".join(details),
            "\n\n",
            _("Send it to the person you invite. I will tell you when they join."),
        ),
        builders.invite_made(portal.id, link),
    )


async def _show_open_invites(
    callback: CallbackQuery,
    session: AsyncSession,
    access: PortalAccess,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    open_invites = await invites.open_invites(session, access.portal.id, now)
    departments = {
        item.id: item.name for item in await invites.departments_of(session, access.portal.id)
    }
    labels = []
    for invite in open_invites:
        parts = [views.role_name(Role(invite.role))]
        if invite.department_id in departments:
            parts.append(departments[invite.department_id])
        parts.append(_("until {moment}").format(moment=views.instant(invite.expires_at, zone)))
        labels.append(" · ".join(parts))

    if open_invites:
        body = Text(
            _("Open invites of "),
            Bold(access.portal.name),
            f" ({len(open_invites)})\n\n",
            _("Tap an invite to revoke it."),
        )
    else:
        body = Text(_("Open invites of "), Bold(access.portal.name), "\n\n", _("None."))
    await show(callback, body, builders.open_invites(access.portal.id, open_invites, labels))


def create_router() -> Router:
    """The invites handlers, on a router of their own for each dispatcher."""
    router = Router(name="invites")
    router.message.register(invite_command, Command("invite"))
    router.callback_query.register(
        invite_from_menu, PortalTap.filter(F.action == PortalAction.INVITE)
    )
    router.callback_query.register(invite_step, InviteTap.filter())
    return router
