"""Inline keyboards, built with aiogram's builder. Buttons carry ids, never names."""

from collections.abc import Callable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CopyTextButton,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.keyboards.callbacks import (
    InviteAction,
    InviteTap,
    LanguageTap,
    Noop,
    PhoneLinkTap,
    PortalAction,
    PortalListPage,
    PortalTap,
    SearchPageTap,
    StaffPageTap,
    StructurePageTap,
)
from bot.views import clip, portal_mark, role_name
from domain.addresses import display_address, portal_url
from domain.rules import MenuItem, Role
from services.people import MyPortal, PortalsPage, list_order_key
from storage.models import Department, Invite

PORTALS_PER_PAGE = 8
DEPARTMENTS_PER_PAGE = 8
BUTTON_LABEL = 60


def pages_of(count: int, per_page: int) -> int:
    return max(1, -(-count // per_page))


def pager_row(
    builder: InlineKeyboardBuilder,
    page: int,
    pages: int,
    make: Callable[[int], CallbackData],
) -> None:
    """◀ n/m ▶ under a paged view; nothing when everything fits on one page."""
    if pages <= 1:
        return
    row: list[InlineKeyboardButton] = []
    if page > 0:
        row.append(InlineKeyboardButton(text="◀️", callback_data=make(page - 1).pack()))
    row.append(InlineKeyboardButton(text=f"{page + 1}/{pages}", callback_data=Noop().pack()))
    if page < pages - 1:
        row.append(InlineKeyboardButton(text="▶️", callback_data=make(page + 1).pack()))
    builder.row(*row)


def ordered_for_list(portals: list[MyPortal]) -> list[MyPortal]:
    """Networks together, each head first, then its branches by name; standalone last."""
    return sorted(portals, key=list_order_key)


def portal_list(
    portals: list[MyPortal], current_id: int | None, page: int, *, offer_phone: bool = False
) -> InlineKeyboardMarkup:
    ordered = ordered_for_list(portals)
    pages = pages_of(len(ordered), PORTALS_PER_PAGE)
    page = min(max(page, 0), pages - 1)
    listed = {portal.id for portal in portals}
    shown = ordered[page * PORTALS_PER_PAGE : (page + 1) * PORTALS_PER_PAGE]
    listing = PortalsPage(
        portals=shown,
        total=len(ordered),
        page=page,
        pages=pages,
        under_their_head=frozenset(portal.id for portal in shown if portal.head_id in listed),
    )
    return portal_list_page(listing, current_id, offer_phone=offer_phone)


def portal_list_page(
    listing: PortalsPage, current_id: int | None, *, offer_phone: bool = False
) -> InlineKeyboardMarkup:
    """A page of the portal list as buttons, with the pager under them."""
    builder = InlineKeyboardBuilder()
    for portal in listing.portals:
        # A branch is drawn under its head only when the head is in the list too.
        indent = "  ↳ " if portal.id in listing.under_their_head else ""
        current = " ✓" if portal.id == current_id else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{indent}{portal_mark(portal)} {clip(portal.name, BUTTON_LABEL)}{current}",
                callback_data=PortalTap(action=PortalAction.MENU, portal_id=portal.id).pack(),
            )
        )
    pager_row(builder, listing.page, listing.pages, lambda number: PortalListPage(page=number))
    if offer_phone:
        builder.row(
            InlineKeyboardButton(
                text=_("📱 Find my other portals by phone"),
                callback_data=PhoneLinkTap().pack(),
            )
        )
    return builder.as_markup()


def share_contact() -> ReplyKeyboardMarkup:
    """The button that sends one's own contact: Telegram fills in the number and user id."""
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("📱 Share my phone number"), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def page_of_portal(portals: list[MyPortal], portal_id: int) -> int:
    ids = [portal.id for portal in ordered_for_list(portals)]
    return ids.index(portal_id) // PORTALS_PER_PAGE if portal_id in ids else 0


def page_of_position(position: int) -> int:
    """The page of the portal list that shows the portal at `position`."""
    return position // PORTALS_PER_PAGE


def portal_menu(
    portal_id: int, address: str, items: list[MenuItem], back_page: int
) -> InlineKeyboardMarkup:
    """The branch menu: only the items this person may use, in the rules' order."""
    builder = InlineKeyboardBuilder()

    def tap(action: PortalAction) -> str:
        return PortalTap(action=action, portal_id=portal_id).pack()

    if MenuItem.GO in items:
        builder.row(
            InlineKeyboardButton(
                text=_("➡️ Go to this portal"), callback_data=tap(PortalAction.GO)
            ),
            InlineKeyboardButton(text=_("🌐 Open"), url=portal_url(address)),
        )
    if MenuItem.COPY in items:
        builder.row(
            InlineKeyboardButton(
                text=_("📋 Copy the address"),
                copy_text=CopyTextButton(text=display_address(address)),
            )
        )
    if MenuItem.INVITE in items:
        builder.row(
            InlineKeyboardButton(
                text=_("✉️ Invite employees"), callback_data=tap(PortalAction.INVITE)
            )
        )
    reading = [
        InlineKeyboardButton(text=_("👥 Staff"), callback_data=tap(PortalAction.STAFF))
        for item in items
        if item is MenuItem.STAFF
    ] + [
        InlineKeyboardButton(text=_("🗂 Structure"), callback_data=tap(PortalAction.STRUCTURE))
        for item in items
        if item is MenuItem.STRUCTURE
    ]
    if reading:
        builder.row(*reading)
    if MenuItem.SYNC in items:
        builder.row(
            InlineKeyboardButton(
                text=_("🔄 Sync now from Bitrix24"), callback_data=tap(PortalAction.SYNC)
            )
        )
    if MenuItem.DISCONNECT in items:
        builder.row(
            InlineKeyboardButton(
                text=_("⛔ Disconnect from the network"),
                callback_data=tap(PortalAction.DISCONNECT),
            )
        )
    builder.row(back_to_list(back_page))
    return builder.as_markup()


def back_to_list(page: int = 0) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=_("⬅️ All my portals"), callback_data=PortalListPage(page=page).pack()
    )


def back_to_portal(portal_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=_("⬅️ Back to the portal"),
        callback_data=PortalTap(action=PortalAction.MENU, portal_id=portal_id).pack(),
    )


def staff_pages(
    portal_id: int, page: int, pages: int, query_id: int = 0, search: str | None = None
) -> InlineKeyboardMarkup:
    """The pager of the staff list; a search goes by its stored id or, if given, its text."""

    def page_tap(number: int) -> CallbackData:
        if search is not None:
            return SearchPageTap(portal_id=portal_id, page=number, text=search)
        return StaffPageTap(portal_id=portal_id, page=number, query_id=query_id)

    builder = InlineKeyboardBuilder()
    pager_row(builder, page, pages, page_tap)
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def structure_pages(portal_id: int, page: int, pages: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    pager_row(
        builder, page, pages, lambda number: StructurePageTap(portal_id=portal_id, page=number)
    )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def choose_portal(portals: list[MyPortal], action: PortalAction) -> InlineKeyboardMarkup:
    """Asked when a one-portal command has no current portal to act on."""
    builder = InlineKeyboardBuilder()
    for portal in ordered_for_list(portals)[:90]:
        builder.row(
            InlineKeyboardButton(
                text=f"{portal_mark(portal)} {clip(portal.name, BUTTON_LABEL)}",
                callback_data=PortalTap(action=action, portal_id=portal.id).pack(),
            )
        )
    return builder.as_markup()


def invite_roles(portal_id: int, open_count: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for role in (Role.EMPLOYEE, Role.ADMIN):
        builder.button(
            text=_("Invite as {role}").format(role=role_name(role)),
            callback_data=InviteTap(
                action=InviteAction.ROLE, portal_id=portal_id, role=role.value, value=0
            ),
        )
    builder.adjust(1)
    if open_count:
        builder.row(
            InlineKeyboardButton(
                text=_("📨 Open invites ({count})").format(count=open_count),
                callback_data=InviteTap(action=InviteAction.LIST, portal_id=portal_id).pack(),
            )
        )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def invite_departments(
    portal_id: int, role: Role, departments: list[Department], page: int
) -> InlineKeyboardMarkup:
    pages = pages_of(len(departments), DEPARTMENTS_PER_PAGE)
    page = min(max(page, 0), pages - 1)

    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=_("Without a department"),
            callback_data=InviteTap(
                action=InviteAction.DEPARTMENT, portal_id=portal_id, role=role.value, value=0
            ).pack(),
        )
    )
    shown = departments[page * DEPARTMENTS_PER_PAGE : (page + 1) * DEPARTMENTS_PER_PAGE]
    for department in shown:
        builder.row(
            InlineKeyboardButton(
                text=clip(department.name, BUTTON_LABEL),
                callback_data=InviteTap(
                    action=InviteAction.DEPARTMENT,
                    portal_id=portal_id,
                    role=role.value,
                    value=department.id,
                ).pack(),
            )
        )
    pager_row(
        builder,
        page,
        pages,
        lambda number: InviteTap(
            action=InviteAction.ROLE, portal_id=portal_id, role=role.value, value=number
        ),
    )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def invite_made(portal_id: int, link: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(text=_("📋 Copy the link"), copy_text=CopyTextButton(text=link))
    )
    builder.row(
        InlineKeyboardButton(
            text=_("📨 Open invites"),
            callback_data=InviteTap(action=InviteAction.LIST, portal_id=portal_id).pack(),
        )
    )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def open_invites(portal_id: int, invites: list[Invite], labels: list[str]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for invite, label in list(zip(invites, labels, strict=True))[:40]:
        builder.row(
            InlineKeyboardButton(
                text="✖ " + clip(label, BUTTON_LABEL),
                callback_data=InviteTap(
                    action=InviteAction.REVOKE, portal_id=portal_id, value=invite.id
                ).pack(),
            )
        )
    builder.row(
        InlineKeyboardButton(
            text=_("✉️ New invite"),
            callback_data=InviteTap(action=InviteAction.NEW, portal_id=portal_id).pack(),
        )
    )
    builder.row(back_to_portal(portal_id))
    return builder.as_markup()


def languages() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text="🇷🇺 Русский", callback_data=LanguageTap(code="ru"))
    builder.button(text="🇬🇧 English", callback_data=LanguageTap(code="en"))
    return builder.as_markup()


def open_private_chat(bot_username: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("💬 Open a private chat"), url=f"https://t.me/{bot_username}")
    return builder.as_markup()
