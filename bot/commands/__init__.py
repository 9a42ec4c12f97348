"""One router per command family, made afresh for each dispatcher, in the order below."""

from aiogram import Router

from bot.commands import (
    bitrix,
    common,
    fallback,
    groups,
    invites,
    members,
    network,
    portals,
    staff,
    start,
    structure,
)


def routers() -> list[Router]:
    """Group chats first (they get a pointer instead), the catch-all last.

    Bitrix24 comes before start: a plain /start from someone on no portal also offers the
    phone button.
    """
    return [
        groups.create_router(),
        bitrix.create_router(),
        start.create_router(),
        portals.create_router(),
        staff.create_router(),
        structure.create_router(),
        invites.create_router(),
        network.create_router(),
        members.create_router(),
        common.create_router(),
        fallback.create_router(),
    ]
