"""Keyboards of branch administration and staff management. Buttons carry ids, never names."""

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.keyboards.builders import BUTTON_LABEL, back_to_portal, pager_row
from bot.keyboards.callbacks import (
    MemberAction,
    MemberChange,
    MemberTap,
    NetworkAction,
    NetworkTap,
    PortalAction,
    PortalTap,
)
from bot.views import clip, role_name
from domain.rules import Role
from services.network import BranchRow, MemberRow
from storage.models import Portal

# Telegram allows 100 buttons; a long choice is cut well below that.
MAX_CHOICES = 90


def _tap(action: NetworkAction, head_id: int, portal_id: int = 0, page: int = 0) -> str:
    return NetworkTap(action=action, head_id=head_id, portal_id=portal_id, page=page).pack()


def _cancel(head_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=_("✖ Cancel"), callback_data=_tap(NetworkAction.CANCEL, head_id)
    )


def choose_head(heads: list[Portal], action: NetworkAction) -> InlineKeyboardMarkup:
    """Asked of a person who administers several heads: which network?"""
    builder = InlineKeyboardBuilder()
    for head in heads[:MAX_CHOICES]:
        builder.row(
            InlineKeyboardButton(
                text="🏛 " + clip(head.name, BUTTON_LABEL), callback_data=_tap(action, head.id)
            )
        )
    return builder.as_markup()


def connect_candidates(head_id: int, portals: list[Portal]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for portal in portals[:MAX_CHOICES]:
        builder.row(
            InlineKeyboardButton(
                text=clip(portal.name, BUTTON_LABEL),
                callback_data=_tap(NetworkAction.CONNECT_PICK, head_id, portal.id),
            )
        )
    builder.row(_cancel(head_id))
    return builder.as_markup()


def confirm_connect(head_id: int, portal_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("✅ Connect"),
            callback_data=_tap(NetworkAction.CONNECT_CONFIRM, head_id, portal_id),
        ),
        _cancel(head_id),
    )
    return builder.as_markup()


def branches_page(
    head_id: int, rows: list[BranchRow], page: int, pages: int, *, to_disconnect: bool
) -> InlineKeyboardMarkup:
    """A page of branches: each opens its card, or (to disconnect) asks for confirmation."""
    action = NetworkAction.DISCONNECT_ASK if to_disconnect else NetworkAction.BRANCH
    listing = NetworkAction.DISCONNECT_LIST if to_disconnect else NetworkAction.BRANCHES
    builder = InlineKeyboardBuilder()
    for row in rows:
        mark = "⚠️" if row.incompatible_until is not None else "🏢"
        prefix = "⛔ " if to_disconnect else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{prefix}{mark} {clip(row.name, BUTTON_LABEL)}",
                callback_data=_tap(action, head_id, row.id, page),
            )
        )
    pager_row(
        builder,
        page,
        pages,
        lambda number: NetworkTap(action=listing, head_id=head_id, page=number),
    )
    if to_disconnect:
        builder.row(_cancel(head_id))
    return builder.as_markup()


def branch_card(head_id: int, branch_id: int, page: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("⛔ Disconnect from the network"),
            callback_data=_tap(NetworkAction.DISCONNECT_ASK, head_id, branch_id, page),
        )
    )
    builder.row(
        InlineKeyboardButton(
            text=_("⬅️ All branches"),
            callback_data=_tap(NetworkAction.BRANCHES, head_id, page=page),
        )
    )
    return builder.as_markup()


def confirm_disconnect(head_id: int, branch_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("⛔ Disconnect"),
            callback_data=_tap(NetworkAction.DISCONNECT_CONFIRM, head_id, branch_id),
        ),
        _cancel(head_id),
    )
    return builder.as_markup()


def new_branch_made(branch_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("Open its menu"),
            callback_data=PortalTap(action=PortalAction.MENU, portal_id=branch_id).pack(),
        )
    )
    return builder.as_markup()


# Staff management.


def _member_tap(
    action: MemberAction,
    portal_id: int,
    person_id: int = 0,
    change: MemberChange = MemberChange.NONE,
    page: int = 0,
) -> str:
    return MemberTap(
        action=action, portal_id=portal_id, person_id=person_id, change=change, page=page
    ).pack()


def choose_staff_portal(portals: list[tuple[int, str]]) -> InlineKeyboardMarkup:
    """The portals whose staff the person manages, as (id, name)."""
    builder = InlineKeyboardBuilder()
    for portal_id, name in portals[:MAX_CHOICES]:
        builder.row(
            InlineKeyboardButton(
                text=clip(name, BUTTON_LABEL),
                callback_data=_member_tap(MemberAction.LIST, portal_id),
            )
        )
    return builder.as_markup()


def members_page(
    portal_id: int, rows: list[MemberRow], page: int, pages: int
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for row in rows:
        marks = (" ⭐" if row.role is Role.ADMIN else "") + ("" if row.linked else " ⛓")
        builder.row(
            InlineKeyboardButton(
                text=clip(row.name, BUTTON_LABEL) + marks,
                callback_data=_member_tap(MemberAction.CARD, portal_id, row.person_id, page=page),
            )
        )
    pager_row(
        builder,
        page,
        pages,
        lambda number: MemberTap(action=MemberAction.LIST, portal_id=portal_id, page=number),
    )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def member_card(
    portal_id: int, row: MemberRow, page: int, *, is_self: bool
) -> InlineKeyboardMarkup:
    """What an admin may change about one person; removing or unlinking oneself is not offered."""
    builder = InlineKeyboardBuilder()

    def ask(text: str, change: MemberChange) -> None:
        builder.row(
            InlineKeyboardButton(
                text=text,
                callback_data=_member_tap(
                    MemberAction.ASK, portal_id, row.person_id, change, page
                ),
            )
        )

    if row.role is Role.EMPLOYEE:
        ask(_("⭐ Make {role}").format(role=role_name(Role.ADMIN)), MemberChange.MAKE_ADMIN)
    else:
        ask(_("Make {role}").format(role=role_name(Role.EMPLOYEE)), MemberChange.MAKE_EMPLOYEE)
    if not is_self:
        ask(_("🚫 Remove from the staff"), MemberChange.REMOVE)
        if row.linked:
            ask(_("⛓ Unlink the Telegram account"), MemberChange.UNLINK)
    builder.row(
        InlineKeyboardButton(
            text=_("⬅️ All staff"),
            callback_data=_member_tap(MemberAction.LIST, portal_id, page=page),
        )
    )
    return builder.as_markup()


def confirm_member_change(
    portal_id: int, person_id: int, change: MemberChange, page: int
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("✅ Confirm"),
            callback_data=_member_tap(MemberAction.CONFIRM, portal_id, person_id, change, page),
        ),
        InlineKeyboardButton(
            text=_("✖ Cancel"),
            callback_data=_member_tap(MemberAction.CARD, portal_id, person_id, page=page),
        ),
    )
    return builder.as_markup()


def back_to_members(portal_id: int, page: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("⬅️ All staff"),
            callback_data=_member_tap(MemberAction.LIST, portal_id, page=page),
        )
    )
    return builder.as_markup()


def choose_head_for(heads: list[Portal], portal_id: int) -> InlineKeyboardMarkup:
    """Which network one named portal joins, when the person administers several heads."""
    builder = InlineKeyboardBuilder()
    for head in heads[:MAX_CHOICES]:
        builder.row(
            InlineKeyboardButton(
                text="🏛 " + clip(head.name, BUTTON_LABEL),
                callback_data=_tap(NetworkAction.CONNECT_PICK, head.id, portal_id),
            )
        )
    return builder.as_markup()
