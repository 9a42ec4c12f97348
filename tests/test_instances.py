"""Several instances of the bot at once, on one database and one Bot API (the stand-in).

The dialog tests need Redis (TEST_REDIS_URL); the tests of many instances sending at once run
on PostgreSQL (TEST_DATABASE_URL), where instances on several machines share one database.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update

from bot.delivery import Courier, Pacer
from bot.i18n import create_i18n
from bot.jobs import TimedChanges
from domain.rules import Plan, Role
from services.importer import import_network
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Membership, Person, Portal
from tests import factories
from tests.botapi import FakeChat
from tests.botapi.plugin import make_bot
from tests.botapi.server import FakeBotAPI
from tests.databases import REDIS_URL, needs_redis, postgresql_only
from tests.factories import EPOCH
from tests.harness import MutableClock
from tests.webhooks import TelegramPoster, WebhookInstance, webhook_instance

pytestmark = pytest.mark.e2e

HEAD_ADMIN = 903
MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The test Redis database, emptied before and after the test."""
    assert REDIS_URL is not None
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    try:
        yield REDIS_URL
    finally:
        await client.flushdb()
        await client.aclose()


async def seed_head(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            head = await factories.portal(
                session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True
            )
            admin = await factories.person(session, "Head Admin", HEAD_ADMIN)
            await factories.member(session, admin, head, Role.ADMIN)
            await session.commit()
    finally:
        await engine.dispose()


async def say(telegram: TelegramPoster, instance: WebhookInstance, user_id: int, text: str) -> str:
    """The person writes; `instance` gets the update; returns the bot's answer."""
    await telegram.api.send(user_id, text)
    [answer] = await telegram.deliver(instance)
    assert answer.status == 200
    return telegram.api.last(user_id).text


@needs_redis
async def test_a_dialog_started_on_one_instance_finishes_on_another_after_a_restart(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str, redis_url: str
) -> None:
    await seed_head(database_url)
    bot_api.user(HEAD_ADMIN, "Head", last_name="Admin", language_code="en")
    telegram = TelegramPoster(bot_api)
    clock = MutableClock()

    async with (
        webhook_instance(bot_api, tmp_path, database_url, clock, redis_url=redis_url) as one,
        webhook_instance(bot_api, tmp_path, database_url, clock, redis_url=redis_url) as two,
    ):
        asked = await say(telegram, one, HEAD_ADMIN, "/newbranch")
        assert "What is the new portal called?" in asked
        # The next step goes to the other instance, which has never seen this person.
        assert (await say(telegram, two, HEAD_ADMIN, "Acme Omsk")).startswith("Its address?")

    # Both instances stopped; a fresh one finishes the dialog from Redis.
    async with webhook_instance(
        bot_api, tmp_path, database_url, clock, redis_url=redis_url
    ) as three:
        done = await say(telegram, three, HEAD_ADMIN, "https://Omsk.Acme.ru/")
        assert done.startswith("✅ Acme Omsk (omsk.acme.ru) is created and connected")
        async with three.session_factory() as session:
            omsk = await session.scalar(select(Portal).where(Portal.address == "omsk.acme.ru"))
            assert omsk is not None
            role = await session.scalar(
                select(Membership.role).where(Membership.portal_id == omsk.id)
            )
        assert role == "admin"
        # The dialog is over everywhere.
        assert await say(telegram, three, HEAD_ADMIN, "Acme Tomsk") == (
            "I answer commands. /help lists them."
        )


async def test_without_redis_a_dialog_lives_in_its_instance_only(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> None:
    """Why several instances need REDIS_URL: in memory, the other instance knows nothing."""
    await seed_head(database_url)
    bot_api.user(HEAD_ADMIN, "Head", last_name="Admin", language_code="en")
    telegram = TelegramPoster(bot_api)
    clock = MutableClock()

    async with (
        webhook_instance(bot_api, tmp_path, database_url, clock, redis_url=None) as one,
        webhook_instance(bot_api, tmp_path, database_url, clock, redis_url=None) as two,
    ):
        assert "What is the new portal called?" in await say(
            telegram, one, HEAD_ADMIN, "/newbranch"
        )
        assert await say(telegram, two, HEAD_ADMIN, "Acme Omsk") == (
            "I answer commands. /help lists them."
        )


# Many instances sending at once.

BRANCHES = 1000
HEAD_OF_ALL = 1_000_000
DEMO_END = EPOCH + timedelta(days=10)


def big_network() -> dict[str, Any]:
    """A head and BRANCHES free branches in their demo, each with an admin of its own."""
    portals: list[dict[str, Any]] = [
        {"address": "acme.ru", "name": "Acme HQ", "plan": "enterprise", "role": "head"}
    ]
    people: list[dict[str, Any]] = [
        {
            "telegram_id": HEAD_OF_ALL,
            "name": "Vera Head",
            "language": "en",
            "memberships": [{"portal": "acme.ru", "role": "admin"}],
        }
    ]
    for number in range(1, BRANCHES + 1):
        address = f"b{number}.acme.ru"
        portals.append(
            {
                "address": address,
                "name": f"Branch {number}",
                "plan": "free",
                "network": "acme.ru",
                "demo_until": DEMO_END.isoformat().replace("+00:00", "Z"),
            }
        )
        people.append(
            {
                "telegram_id": 2_000_000 + number,
                "name": f"Admin {number}",
                "language": "en",
                "memberships": [{"portal": address, "role": "admin"}],
            }
        )
    return {"portals": portals, "people": people}


async def seed_big_network(api: FakeBotAPI, database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            await import_network(session, big_network(), now=EPOCH)
            # Everyone has opened the bot once, so it may write to them.
            await session.execute(update(Person).values(started_at=EPOCH))
            await session.commit()
    finally:
        await engine.dispose()
    for telegram_id in [HEAD_OF_ALL, *(2_000_000 + n for n in range(1, BRANCHES + 1))]:
        user = api.user(telegram_id, f"Person {telegram_id}", language_code="en")
        api.chats[telegram_id] = FakeChat(telegram_id, "private", user=user)
        api.started.add(telegram_id)


@postgresql_only
async def test_two_instances_send_each_of_a_thousand_due_reminders_once(
    bot_api: FakeBotAPI, database_url: str
) -> None:
    await seed_big_network(bot_api, database_url)
    # Three days before the demos end: every branch's admin and the head's admin are owed one.
    clock = MutableClock(DEMO_END - timedelta(days=3) + timedelta(minutes=1))
    engines = [create_engine(database_url) for _ in range(2)]
    bots = [make_bot(bot_api) for _ in range(2)]
    try:
        factories_ = [create_session_factory(engine) for engine in engines]
        i18n = create_i18n()
        # Both instances' timed jobs run at the same moment, as after a joint restart.
        runs = await asyncio.gather(
            *(TimedChanges(factory, clock).run() for factory in factories_)
        )
        assert sum(run.reminders_owed for run in runs) == BRANCHES + BRANCHES

        couriers = [
            Courier(bot, factory, i18n, clock, Pacer(per_second=2000), MOSCOW)
            for bot, factory in zip(bots, factories_, strict=True)
        ]
        delivered = await asyncio.gather(*(courier.deliver_due() for courier in couriers))
    finally:
        for bot in bots:
            await bot.session.close()
        for engine in engines:
            await engine.dispose()

    # Each branch admin got exactly one message, and the head's admin each branch once.
    for number in range(1, BRANCHES + 1):
        assert len(bot_api.messages(2_000_000 + number)) == 1, number
    head_messages = bot_api.messages(HEAD_OF_ALL)
    mentioned = [
        number
        for message in head_messages
        for number in range(1, BRANCHES + 1)
        if f"(b{number}.acme.ru)" in message.text
    ]
    assert sorted(mentioned) == list(range(1, BRANCHES + 1))
    assert sum(delivered) == 2 * BRANCHES
    # Both instances did a share of the work.
    assert all(count > 0 for count in delivered), delivered
