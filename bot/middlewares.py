"""What every handled update gets: a transaction, the person, and the time."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.enums import ChatType
from aiogram.types import TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clock import Clock
from services.people import person_and_portals

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


class PersonMiddleware(BaseMiddleware):
    """Loads the person linked to the Telegram account (None for a stranger).

    A private message marks the person as reachable: Telegram lets a bot write only to people
    who have started it.
    """

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session: AsyncSession = data["session"]
        person = None
        if user is not None:
            person, _portals = await person_and_portals(session, user.id)
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
