"""What every handled update gets: a transaction, the person, and the time."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.enums import ChatType
from aiogram.types import TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.keyboards.callbacks import PortalTap
from services.clock import Clock
from services.people import person_for_update

logger = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class UnitOfWorkMiddleware(BaseMiddleware):
    """One session per handled update: committed when the handler returns, else rolled back.

    It is an inner middleware, so updates no handler takes cost no database work.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.session_factory = session_factory
        self.clock = clock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.session_factory() as session:
            data["session"] = session
            data["now"] = self.clock()
            result = await handler(event, data)
            await session.commit()
            return result


def portal_of_tap(data: dict[str, Any]) -> int | None:
    """The portal a tap is about, from the callback data its handler's filter has parsed."""
    portal_id = getattr(data.get("callback_data"), "portal_id", None)
    return portal_id if isinstance(portal_id, int) and portal_id > 0 else None


def shows_place_in_list(data: dict[str, Any]) -> bool:
    """Whether the tap opens a branch menu, whose way back is to the portal's page of the list."""
    return isinstance(data.get("callback_data"), PortalTap)


class PersonMiddleware(BaseMiddleware):
    """Loads the person linked to the Telegram account (None for a stranger).

    With the person come the portals the update is about: a tap's portal and the current one.
    An inner middleware runs after the handler's filters, so a tap's callback data is parsed
    by now. A private message marks the person as reachable: Telegram lets a bot write only to
    people who have started it.
    """

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session: AsyncSession = data["session"]
        person = None
        if user is not None:
            person = await person_for_update(
                session, user.id, portal_of_tap(data), with_position=shows_place_in_list(data)
            )
        data["person"] = person

        if person is not None and user is not None:
            chat = data.get("event_chat")
            if (
                chat is not None
                and chat.type == ChatType.PRIVATE
                and (person.started_at is None or person.blocked_at is not None)
            ):
                person.started_at = person.started_at or data["now"]
                person.blocked_at = None
            if user.language_code and person.telegram_language != user.language_code:
                person.telegram_language = user.language_code
            if user.username != person.username and user.username:
                person.username = user.username
        return await handler(event, data)
