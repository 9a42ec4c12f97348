"""Several instances of the bot at once, on one database and one Bot API (the stand-in).

The dialog tests need Redis (TEST_REDIS_URL). Sending runs on both databases: on PostgreSQL
(where instances on several machines share one database) the claims take row locks that skip
what another instance holds; on SQLite one writer at a time makes the same claims.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, update

from bot.delivery import Courier, Pacer
from bot.i18n import create_i18n
from bot.jobs import TimedChanges
from domain.rules import Plan, Role
from services.importer import import_network
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, Membership, Notice, Person, Portal
from tests import factories
from tests.botapi import FakeChat
from tests.botapi.plugin import make_bot
from tests.botapi.server import FakeBotAPI
from tests.databases import REDIS_URL, needs_redis
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

# Each branch's reminder is owed to its admin and to its head's admin: 1,000 reminders.
HEADS = 10
BRANCHES_PER_HEAD = 50
BRANCHES = HEADS * BRANCHES_PER_HEAD
DEMO_END = EPOCH + timedelta(days=10)


def head_admin_id(head: int) -> int:
    return 1_000_000 + head


def branch_admin_id(branch: int) -> int:
    return 2_000_000 + branch


def big_network(heads: int = HEADS, per_head: int = BRANCHES_PER_HEAD) -> dict[str, Any]:
    """`heads` networks of `per_head` free branches in their demo, an admin on each portal."""
    portals: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    for head in range(1, heads + 1):
        head_address = f"head{head}.example.ru"
        portals.append(
            {"address": head_address, "name": f"Head {head}", "plan": "enterprise", "role": "head"}
        )
        people.append(
            {
                "telegram_id": head_admin_id(head),
                "name": f"Head admin {head}",
                "language": "en",
                "memberships": [{"portal": head_address, "role": "admin"}],
            }
        )
        for index in range(1, per_head + 1):
            branch = (head - 1) * per_head + index
            address = f"b{branch}.example.ru"
            portals.append(
                {
                    "address": address,
                    "name": f"Branch {branch}",
                    "plan": "free",
                    "network": head_address,
                    "demo_until": DEMO_END.isoformat().replace("+00:00", "Z"),
                }
            )
            people.append(
                {
                    "telegram_id": branch_admin_id(branch),
                    "name": f"Branch admin {branch}",
                    "language": "en",
                    "memberships": [{"portal": address, "role": "admin"}],
                }
            )
    return {"portals": portals, "people": people}


async def seed_big_network(
    api: FakeBotAPI, database_url: str, heads: int = HEADS, per_head: int = BRANCHES_PER_HEAD
) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            await import_network(session, big_network(heads, per_head), now=EPOCH)
            # Everyone has opened the bot once, so it may write to them.
            await session.execute(update(Person).values(started_at=EPOCH))
            await session.commit()
    finally:
        await engine.dispose()
    everyone = [head_admin_id(h) for h in range(1, heads + 1)]
    everyone += [branch_admin_id(b) for b in range(1, heads * per_head + 1)]
    for telegram_id in everyone:
        user = api.user(telegram_id, f"Person {telegram_id}", language_code="en")
        api.chats[telegram_id] = FakeChat(telegram_id, "private", user=user)
        api.started.add(telegram_id)


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
        # One of them made the run; the other found it under way and left it.
        assert sorted(run.reminders_owed for run in runs) == [0, 2 * BRANCHES] == [0, 1000]

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

    # Each branch's admin got exactly one message, and each head's admin heard of each of
    # their branches exactly once (in digests).
    for branch in range(1, BRANCHES + 1):
        assert len(bot_api.messages(branch_admin_id(branch))) == 1, branch
    for head in range(1, HEADS + 1):
        mentioned = [
            branch
            for message in bot_api.messages(head_admin_id(head))
            for branch in range(1, BRANCHES + 1)
            if f"(b{branch}.example.ru)" in message.text
        ]
        first = (head - 1) * BRANCHES_PER_HEAD + 1
        assert sorted(mentioned) == list(range(first, first + BRANCHES_PER_HEAD)), head
    assert sum(delivered) == 2 * BRANCHES
    # Both instances did a share of the work.
    assert all(count > 0 for count in delivered), delivered
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            statuses = (
                await connection.execute(
                    select(Notice.status, func.count()).group_by(Notice.status)
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in statuses] == [("sent", 2 * BRANCHES)]


async def test_timed_changes_made_at_once_by_two_instances_are_made_once(
    bot_api: FakeBotAPI, database_url: str
) -> None:
    branches = 40
    await seed_big_network(bot_api, database_url, heads=2, per_head=branches // 2)
    # Past the end of every demo: each branch becomes incompatible, once.
    clock = MutableClock(DEMO_END + timedelta(minutes=1))
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        runs = await asyncio.gather(
            *(TimedChanges(create_session_factory(engine), clock).run() for engine in engines)
        )
        async with engines[0].connect() as connection:
            audited = (
                await connection.execute(
                    select(AuditEntry.portal_id, func.count())
                    .where(AuditEntry.action == "incompatible")
                    .group_by(AuditEntry.portal_id)
                )
            ).all()
            owed = await connection.scalar(select(func.count()).select_from(Notice))
    finally:
        for engine in engines:
            await engine.dispose()

    # One made them; the others found them under way (PostgreSQL) or already made (SQLite).
    assert sorted(run.demos_ended for run in runs) == [0, 0, branches]
    assert len(audited) == branches and {count for _portal, count in audited} == {1}
    # The branch's admin and the head's admin are each told once per branch.
    assert owed == 2 * branches
