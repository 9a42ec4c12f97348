"""A bare aiogram bot for comparison: a fixed answer to everything, no database.

It polls BOT_API_URL with BOT_TOKEN, as `branchbot run` does, and answers each message with a
text and each tap with an edit and an answer, so that bench/memory.py can measure the memory
any aiogram bot needs before branchbot adds its own.

    BOT_TOKEN=... BOT_API_URL=http://127.0.0.1:8081 .venv/bin/python -m bench.bare_bot
"""

import asyncio
import os

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Message


def bare_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def on_message(message: Message) -> None:
        await message.answer("fixed")

    @dispatcher.callback_query()
    async def on_tap(callback: CallbackQuery) -> None:
        if isinstance(callback.message, Message):
            # A new text each time: Telegram refuses an edit that changes nothing.
            await callback.message.edit_text(f"fixed {callback.id}")
        await callback.answer()

    return dispatcher


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["BOT_API_URL"]))
    bot = Bot(os.environ["BOT_TOKEN"], session=session)
    await bare_dispatcher().start_polling(bot, polling_timeout=1)


if __name__ == "__main__":
    asyncio.run(main())
