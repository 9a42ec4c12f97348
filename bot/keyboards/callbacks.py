"""Callback data: short prefixes and ids only, never names. Every field is untrusted input."""

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

# An id or a page number, within what the database's integer columns hold (PostgreSQL's are
# 32-bit). Forged data outside it matches no handler and is answered as an out-of-date button,
# instead of failing in the database.
Number = Annotated[int, Field(ge=0, le=2**31 - 1)]


class PortalAction(StrEnum):
    MENU = "m"
    GO = "g"
    INVITE = "i"
    STAFF = "s"
    STRUCTURE = "t"
    SYNC = "y"
    DISCONNECT = "d"


class PortalListPage(CallbackData, prefix="pl"):
    page: Number


class PortalTap(CallbackData, prefix="p"):
    action: PortalAction
    portal_id: Number


class StaffPageTap(CallbackData, prefix="sp"):
    portal_id: Number
    page: Number
    # A search kept on the server (services/searches.py), when its text is too long to travel.
    query_id: Number = 0


class SearchPageTap(CallbackData, prefix="sf"):
    """A page of a search whose text travels in the button itself, so nothing is stored."""

    portal_id: Number
    page: Number
    text: str


def search_travels(portal_id: int, pages: int, text: str) -> bool:
    """Whether the buttons of every page of a search can carry its text within 64 bytes."""
    try:
        # The last page has the longest number; aiogram refuses the separator and the length.
        SearchPageTap(portal_id=portal_id, page=max(pages - 1, 0), text=text).pack()
    except ValueError:
        return False
    return True


class StructurePageTap(CallbackData, prefix="tp"):
    portal_id: Number
    page: Number


class InviteAction(StrEnum):
    NEW = "n"
    ROLE = "r"
    DEPARTMENT = "d"
    LIST = "l"
    REVOKE = "x"


class InviteTap(CallbackData, prefix="iv"):
    action: InviteAction
    portal_id: Number
    role: str = ""
    value: Number = 0


class LanguageTap(CallbackData, prefix="lg"):
    code: str


class Noop(CallbackData, prefix="no"):
    """A label button (such as a page number) that does nothing when tapped."""


class NetworkAction(StrEnum):
    CONNECT_HEAD = "h"
    CONNECT_PICK = "c"
    CONNECT_CONFIRM = "k"
    NEW_BRANCH_HEAD = "n"
    BRANCHES = "b"
    BRANCH = "r"
    DISCONNECT_LIST = "l"
    DISCONNECT_ASK = "d"
    DISCONNECT_CONFIRM = "y"
    AUDIT = "a"
    CANCEL = "x"


class NetworkTap(CallbackData, prefix="nw"):
    """A step of connecting, listing or disconnecting the branches of the head `head_id`."""

    action: NetworkAction
    head_id: Number
    portal_id: Number = 0
    page: Number = 0


class MemberAction(StrEnum):
    LIST = "l"
    CARD = "c"
    ASK = "a"
    CONFIRM = "y"


class MemberChange(StrEnum):
    NONE = "-"
    REMOVE = "r"
    MAKE_ADMIN = "a"
    MAKE_EMPLOYEE = "e"
    UNLINK = "u"


class MemberTap(CallbackData, prefix="mb"):
    """Staff management on the portal `portal_id`: the list, a person's card, a change."""

    action: MemberAction
    portal_id: Number
    person_id: Number = 0
    change: MemberChange = MemberChange.NONE
    page: Number = 0


class PhoneLinkTap(CallbackData, prefix="ph"):
    """Offer the button that shares one's own phone number, to be found on linked portals."""
