"""What one update costs: the full stack against a bare aiogram bot, in the same run.

The same stream of updates (the portal list, a tap into a branch menu, a staff page, a structure
page) goes through the project's dispatcher, middlewares and a real SQLite database, and through
a bare aiogram bot that answers each update with a fixed text. API calls are answered in
process, so only the bots' own work is measured. Prints updates per second and the ratio.

    .venv/bin/python -m bench.per_update [--updates 1000] [--rounds 5]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.base import BaseSession
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Chat, Message, Update, User

from bot.app import create_dispatcher
from bot.config import load_settings
from domain.rules import Plan, Role
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Department, Membership, Person, Portal, membership_departments

MOMENT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOKEN = "42:bench-token"
BOT_USER = User(id=42, is_bot=True, first_name="bench", username="bench_bot")
PERSON = User(id=1001, is_bot=False, first_name="Anna", language_code="en")
CHAT = Chat(id=1001, type="private", first_name="Anna")


class LocalSession(BaseSession):
    """Answers API calls in process, as Telegram would, without any network."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def close(self) -> None:
        return None

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - the interface aiogram defines
    ) -> TelegramType:
        self.calls += 1
        if isinstance(method, SendMessage | EditMessageText):
            text = method.text
            result: Any = Message(
                message_id=1, date=MOMENT, chat=CHAT, from_user=BOT_USER, text=text
            )
            return result  # type: ignore[no-any-return]
        if isinstance(method, AnswerCallbackQuery):
            return True  # type: ignore[return-value]
        result = BOT_USER if method.__api_method__ == "getMe" else True
        return result  # type: ignore[no-any-return]

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 - the interface aiogram defines
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield b""


def stream(portal_id: int, count: int) -> list[Update]:
    """The updates a person sends while browsing, repeated."""
    menu_message = Message(message_id=1, date=MOMENT, chat=CHAT, from_user=BOT_USER, text="x")

    def tap(update_id: int, data: str) -> Update:
        return Update(
            update_id=update_id,
            callback_query=CallbackQuery(
                id=str(update_id),
                from_user=PERSON,
                chat_instance="1",
                data=data,
                message=menu_message,
            ),
        )

    updates: list[Update] = []
    for number in range(count):
        kind = number % 4
        if kind == 0:
            updates.append(
                Update(
                    update_id=number,
                    message=Message(
                        message_id=number,
                        date=MOMENT,
                        chat=CHAT,
                        from_user=PERSON,
                        text="/portals",
                        entities=[{"type": "bot_command", "offset": 0, "length": 8}],
                    ),
                )
            )
        elif kind == 1:
            updates.append(tap(number, f"p:m:{portal_id}"))
        elif kind == 2:
            updates.append(tap(number, f"sp:{portal_id}:{number % 5}:0"))
        else:
            updates.append(tap(number, f"tp:{portal_id}:0"))
    return updates


def bare_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()

    async def on_message(message: Message) -> None:
        await message.answer("fixed")

    async def on_tap(callback: CallbackQuery) -> None:
        assert isinstance(callback.message, Message)
        await callback.message.edit_text("fixed")
        await callback.answer()

    dispatcher.message.register(on_message, F.text)
    dispatcher.callback_query.register(on_tap)
    return dispatcher


async def seed(session_factory: Any, people: int, departments: int) -> int:
    async with session_factory() as session:
        portal = Portal(
            address="bench.example.ru",
            name="Bench",
            plan=Plan.STANDARD.value,
            is_head=False,
            ever_in_network=False,
            created_at=MOMENT,
        )
        session.add(portal)
        await session.flush()
        units = [
            Department(portal_id=portal.id, key=f"d{n}", name=f"Department {n}")
            for n in range(departments)
        ]
        session.add_all(units)
        await session.flush()
        for n in range(people):
            telegram_id = PERSON.id if n == 0 else None
            person = Person(
                name=f"Person {n:05d}",
                name_folded=f"person {n:05d}",
                telegram_id=telegram_id,
                started_at=MOMENT,
                created_at=MOMENT,
            )
            session.add(person)
            await session.flush()
            membership = Membership(
                person_id=person.id,
                portal_id=portal.id,
                role=(Role.ADMIN if n == 0 else Role.EMPLOYEE).value,
            )
            session.add(membership)
            await session.flush()
            await session.execute(
                membership_departments.insert().values(
                    membership_id=membership.id, department_id=units[n % departments].id
                )
            )
        await session.commit()
        return portal.id


async def rate(dispatcher: Dispatcher, bot: Bot, updates: list[Update]) -> float:
    for update in updates[:40]:  # warm caches and the connection pool
        await dispatcher.feed_update(bot, update)
    started = time.perf_counter()
    for update in updates:
        await dispatcher.feed_update(bot, update)
    return len(updates) / (time.perf_counter() - started)


async def main(count: int, people: int, departments: int, rounds: int = 5) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.sqlite3'}"
        engine = create_engine(url)
        await upgrade(engine)
        session_factory = create_session_factory(engine)
        portal_id = await seed(session_factory, people, departments)
        settings = load_settings(env_file=None, bot_token=TOKEN, database_url=url)
        full = create_dispatcher(settings=settings, session_factory=session_factory)
        updates = stream(portal_id, count)

        full_bot = Bot(TOKEN, session=LocalSession())
        bare_bot = Bot(TOKEN, session=LocalSession())
        bare = bare_dispatcher()
        # Rounds alternate between the two so that load from elsewhere hits both alike.
        bare_rates, full_rates = [], []
        for _ in range(rounds):
            bare_rates.append(await rate(bare, bare_bot, updates))
            full_rates.append(await rate(full, full_bot, updates))
        bare_rate, full_rate = statistics.median(bare_rates), statistics.median(full_rates)
        await engine.dispose()

    print(f"{rounds} alternating rounds of {count} updates each; medians")
    print(f"{'stack':<28}{'updates/s':>12}")
    print(f"{'bare aiogram, fixed text':<28}{bare_rate:>12.0f}")
    print(f"{'branchbot on SQLite':<28}{full_rate:>12.0f}")
    print(f"{'ratio (target >= 0.15)':<28}{full_rate / bare_rate:>12.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--departments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.updates, arguments.people, arguments.departments, arguments.rounds))
