"""Waiting for the Bot API at start-up instead of failing when it cannot be reached."""

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError

from storage.connectivity import Sleep, backoff_delays

logger = logging.getLogger(__name__)

LONGEST_WAIT_SECONDS = 30.0


async def wait_for_telegram(bot: Bot, *, sleep: Sleep = asyncio.sleep) -> None:
    """Return once the Bot API answers getMe; network and server errors are retried forever.

    Nothing the bot does works without Telegram, so waiting (and saying so in the log) is all
    there is to do. A refused token is not a connection problem: it is raised at once.
    """
    delay = backoff_delays(first=1.0, longest=LONGEST_WAIT_SECONDS)
    attempt = 0
    while True:
        try:
            await bot.me()
        except TelegramRetryAfter as error:
            logger.warning("the Bot API asks to wait %s s before start-up", error.retry_after)
            await sleep(error.retry_after)
        except (TelegramNetworkError, TelegramServerError) as error:
            wait = delay(attempt)
            logger.warning(
                "the Bot API cannot be reached (%s); trying again in %.0f s", error.message, wait
            )
            await sleep(wait)
            attempt += 1
        else:
            if attempt:
                logger.info("the Bot API can be reached again")
            return
