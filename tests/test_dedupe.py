"""An update Telegram delivers twice is handled once: by polling, by webhook, by two instances."""

import asyncio
import os
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.dedupe import RETENTION, claim_update, prune_updates
from storage.models import ProcessedUpdate
from tests.botapi.server import FakeBotAPI
from tests.factories import EPOCH
from tests.harness import MutableClock, RunningBot
from tests.webhooks import webhook_instance

pytestmark = pytest.mark.e2e


async def test_a_polled_update_that_comes_again_is_not_handled_again(
    running_bot: RunningBot,
) -> None:
    api = running_bot.api
    stranger = api.user(31337, "Stranger", language_code="en")
    await api.send(stranger, "/start")
    # The update as Telegram sent it, before the bot fetched it.
    [update] = api.pending_updates()
    await api.replies(stranger, count=2)
    await running_bot.settle()
    answered = len(api.messages(stranger))
    mark = api.mark()

    # Telegram sends it again (as after a restart before the offset was confirmed).
    dispatcher = running_bot.app.dispatcher
    await dispatcher.feed_raw_update(running_bot.app.bot, update)
    await asyncio.gather(
        *(dispatcher.feed_raw_update(running_bot.app.bot, update) for _ in range(3))
    )

    await api.assert_silent(stranger, since=mark)
    assert len(api.messages(stranger)) == answered


async def test_a_posted_update_that_comes_again_is_answered_but_not_handled(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> None:
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    async with webhook_instance(bot_api, tmp_path, database_url, MutableClock()) as instance:
        await bot_api.send(stranger, "/start")
        [update] = bot_api.pending_updates()

        first = await instance.post(update)
        answered = len(bot_api.messages(stranger))
        again = await instance.post(update)
        together = await asyncio.gather(*(instance.post(update) for _ in range(3)))

    assert answered >= 1
    # Telegram is told all is well each time, so it stops sending the copy.
    assert [a.status for a in (first, again, *together)] == [200] * 5
    assert len(bot_api.messages(stranger)) == answered


async def test_two_instances_given_the_same_update_at_once_handle_it_once(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> None:
    clock = MutableClock()
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    async with (
        webhook_instance(bot_api, tmp_path, database_url, clock) as one,
        webhook_instance(bot_api, tmp_path, database_url, clock) as two,
    ):
        for text in ("/start", "/help", "/portals"):
            # Once to one instance, to see how many messages it answers with...
            before = len(bot_api.messages(stranger))
            await bot_api.send(stranger, text)
            assert (await one.post(bot_api.pending_updates()[-1])).status == 200
            answered_once = len(bot_api.messages(stranger)) - before
            assert answered_once >= 1

            # ...then a new one, sent to both at the same moment.
            before = len(bot_api.messages(stranger))
            await bot_api.send(stranger, text)
            update = bot_api.pending_updates()[-1]
            answers = await asyncio.gather(one.post(update), two.post(update))
            assert [a.status for a in answers] == [200, 200]
            assert len(bot_api.messages(stranger)) - before == answered_once, text


async def test_old_update_ids_are_forgotten(session_factory) -> None:
    assert await claim_update(session_factory, 1, EPOCH)
    assert await claim_update(session_factory, 2, EPOCH + timedelta(hours=30))
    assert not await claim_update(session_factory, 1, EPOCH + timedelta(hours=1))

    assert await prune_updates(session_factory, EPOCH + RETENTION + timedelta(minutes=1)) == 1

    async with session_factory() as session:
        kept = (await session.scalars(select(ProcessedUpdate.update_id))).all()
    assert kept == [2]
    # Telegram's ids are 64-bit.
    assert await claim_update(session_factory, 2**62 + 5, EPOCH)
