"""Handlers through a real Dispatcher fed real aiogram Update objects (no polling)."""

import time
from datetime import UTC, datetime

from aiogram.types import CallbackQuery, Chat, Message, Update, User

from bot.app import create_dispatcher
from domain.rules import Role
from tests import factories
from tests.botapi.plugin import make_bot
from tests.botapi.telegram import QueryState
from tests.harness import MutableClock, bot_settings

USER = User(id=901, is_bot=False, first_name="Ира", language_code="ru")
CHAT = Chat(id=901, type="private", first_name="Ира")
MOMENT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def command(update_id: int, text: str) -> Update:
    return Update(
        update_id=update_id,
        message=Message(
            message_id=update_id,
            date=MOMENT,
            chat=CHAT,
            from_user=USER,
            text=text,
            entities=[{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        ),
    )


async def test_updates_fed_to_the_dispatcher(bot_api, session_factory, tmp_path) -> None:
    async with session_factory() as session:
        portal = await factories.portal(session, "ira.example.ru", "Ирин портал")
        ira = await factories.person(session, "Ира", 901)
        await factories.member(session, ira, portal, Role.ADMIN)
        await session.commit()
    # Telegram lets a bot write only to people who wrote first; this update is never polled.
    await bot_api.send(bot_api.user(901, "Ира", language_code="ru"), "hi")
    bot = make_bot(bot_api)
    dispatcher = create_dispatcher(
        settings=bot_settings(bot_api, tmp_path),
        session_factory=session_factory,
        clock=MutableClock(MOMENT),
    )
    try:
        await dispatcher.feed_update(bot, command(1, "/portals"))
        listing = bot_api.last(901)
        assert listing.text.startswith("Ваши порталы")
        data = listing.button("Ирин портал")["callback_data"]

        tap = Update(
            update_id=2,
            callback_query=CallbackQuery(
                id="q-1",
                from_user=USER,
                chat_instance="ci",
                data=data,
                message=Message(
                    message_id=listing.message_id,
                    date=MOMENT,
                    chat=CHAT,
                    text=listing.text,
                    from_user=User(id=bot_api.bot_id, is_bot=True, first_name="bot"),
                ),
            ),
        )
        # The query the stand-in would have made, so that answering it is valid.
        bot_api._queries["q-1"] = QueryState(
            "q-1", 901, 901, listing.message_id, data, time.monotonic()
        )
        await dispatcher.feed_update(bot, tap)
        assert bot_api.last(901).text.startswith("Ирин портал")

        await dispatcher.feed_update(bot, command(3, "/staff"))
        assert "1 человек в штате" in bot_api.last(901).text
    finally:
        await bot.session.close()
