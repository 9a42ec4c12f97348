"""Delivering reminders through the local Bot API stand-in: failures, pace, restarts, a kill."""

import asyncio
import math
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Application, build_application
from bot.delivery import Courier, Pacer
from bot.i18n import create_i18n
from domain.rules import Plan, Role
from services.clock import utc_now
from services.reminders import DEMO_REMINDER, DISCONNECT_REMINDER, owe_due
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Notice, Person, Portal
from tests import factories
from tests.botapi.models import FakeChat
from tests.botapi.server import TEST_TOKEN, FakeBotAPI
from tests.harness import MutableClock, bot_settings

DAY = timedelta(days=1)
END = datetime(2026, 12, 16, 9, 0, tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")
HEAD_ADMIN = 900
# Generous bounds on what takes real time (a process starting on a busy machine).
STARTING = 120.0


class Network:
    head: Portal
    branches: list[Portal]
    head_admin: Person
    branch_admins: list[Person]


async def network(
    session: AsyncSession,
    api: FakeBotAPI,
    branches: int,
    demo_until: datetime = END,
    *,
    head_admin_on_branches: bool = False,
) -> Network:
    """A head with one admin, and free branches in their demo with one admin each.

    Everyone has started the bot unless a test says otherwise.
    """
    built = Network()
    built.head = await factories.portal(
        session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True
    )
    built.head_admin = await person(session, api, "Vera", HEAD_ADMIN)
    await factories.member(session, built.head_admin, built.head, Role.ADMIN)
    built.branches, built.branch_admins = [], []
    for number in range(1, branches + 1):
        branch = await factories.portal(
            session,
            f"b{number}.acme.ru",
            f"Branch {number}",
            Plan.FREE,
            head=built.head,
            demo_until=demo_until,
        )
        admin = await person(session, api, f"Admin {number}", 1000 + number)
        await factories.member(session, admin, branch, Role.ADMIN)
        if head_admin_on_branches:
            await factories.member(session, built.head_admin, branch, Role.ADMIN)
        built.branches.append(branch)
        built.branch_admins.append(admin)
    await session.commit()
    return built


async def person(
    session: AsyncSession, api: FakeBotAPI, name: str, telegram_id: int, language: str = "en"
) -> Person:
    # As if they had opened the bot once: a private chat the bot may write to.
    user = api.user(telegram_id, name, language_code="en")
    api.chats[telegram_id] = FakeChat(telegram_id, "private", user=user)
    api.started.add(telegram_id)
    return await factories.person(session, name, telegram_id, language=language)


def courier(
    bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
    clock: MutableClock,
    rate: float = 25.0,
) -> Courier:
    return Courier(bot, session_factory, create_i18n(), clock, Pacer(per_second=rate), MOSCOW)


async def owe(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> int:
    async with session_factory() as session:
        planned = await owe_due(session, now)
        await session.commit()
    return planned.owed


async def notices(session_factory: async_sessionmaker[AsyncSession]) -> list[Notice]:
    async with session_factory() as session:
        return list((await session.execute(select(Notice).order_by(Notice.id))).scalars())


def sends(api: FakeBotAPI) -> list[Any]:
    return [call for call in api.calls if call.method == "sendMessage"]


# Failures.


async def test_a_blocked_admin_does_not_stop_the_others(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        built = await network(session, bot_api, branches=3)
        stranger = await factories.person(session, "Never started", 2001, started=False)
        await factories.member(session, stranger, built.branches[0], Role.ADMIN)
        await session.commit()
    blocked = built.branch_admins[1]
    assert blocked.telegram_id is not None
    bot_api.block(blocked.telegram_id, notify=False)
    clock = MutableClock(END - 3 * DAY)
    assert await owe(session_factory, clock()) == 3 + 1 + 3

    delivered = await courier(bot_api_bot, session_factory, clock).deliver_due()

    # The head's admin gets one message about the three branches.
    assert delivered == 3 + 2
    assert len(bot_api.messages(HEAD_ADMIN)) == 1
    for admin in (built.branch_admins[0], built.branch_admins[2]):
        assert admin.telegram_id is not None
        assert len(bot_api.messages(admin.telegram_id)) == 1
    assert bot_api.messages(blocked.telegram_id) == []
    # Nobody tried to write to the person who never started the bot.
    assert all(call.params["chat_id"] != 2001 for call in sends(bot_api))

    outcomes = {n.person_id: (n.status, n.last_error) for n in await notices(session_factory)}
    assert outcomes[blocked.id] == ("unreachable", "blocked the bot")
    assert outcomes[stranger.id] == ("unreachable", "never started the bot")
    assert outcomes[built.branch_admins[0].id] == ("sent", None)
    async with session_factory() as session:
        refreshed = await session.get(Person, blocked.id)
        assert refreshed is not None and refreshed.blocked_at == clock()


async def test_a_429_is_waited_out_and_the_message_is_kept(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        await network(session, bot_api, branches=2)
    clock = MutableClock(END - 7 * DAY)
    await owe(session_factory, clock())
    bot_api.fail_next("sendMessage", 429, retry_after=1)

    assert await courier(bot_api_bot, session_factory, clock).deliver_due() == 4

    refused, *accepted = sends(bot_api)
    assert len(accepted) == 3
    # Nobody was sent anything during the wait Telegram asked for; then the refused
    # message went again.
    assert accepted[0].time - refused.time >= 1.0
    assert [call.params["chat_id"] for call in accepted].count(refused.params["chat_id"]) == 1
    for chat_id in (HEAD_ADMIN, 1001, 1002):
        assert len(bot_api.messages(chat_id)) == 1
    rows = await notices(session_factory)
    assert {row.status for row in rows} == {"sent"}
    # The head's admin came first: both notices of that one message were tried twice.
    assert sorted(row.attempts for row in rows) == [1, 1, 2, 2]


async def test_a_reminder_whose_reason_is_gone_is_not_sent(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        built = await network(session, bot_api, branches=2)
    clock = MutableClock(END - 7 * DAY)
    await owe(session_factory, clock())
    async with session_factory() as session:
        await session.execute(
            update(Portal)
            .where(Portal.id == built.branches[0].id)
            .values(plan=Plan.BASIC.value, demo_until=None)
        )
        await session.commit()

    assert await courier(bot_api_bot, session_factory, clock).deliver_due() == 2

    assert len(bot_api.messages(1001)) == 0
    [message] = bot_api.messages(HEAD_ADMIN)
    assert "Branch 2" in message.text and "Branch 1" not in message.text
    statuses = sorted((row.status, row.last_error or "") for row in await notices(session_factory))
    assert statuses == [
        ("obsolete", "the branch has moved to a commercial plan"),
        ("obsolete", "the branch has moved to a commercial plan"),
        ("sent", ""),
        ("sent", ""),
    ]


async def test_an_admin_of_both_portals_gets_one_message(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        await network(session, bot_api, branches=1, head_admin_on_branches=True)
    clock = MutableClock(END - DAY)
    assert await owe(session_factory, clock()) == 2

    await courier(bot_api_bot, session_factory, clock).deliver_due()

    [message] = bot_api.messages(HEAD_ADMIN)
    assert "The demo of Branch 1 (b1.acme.ru) ends on 16.12.2026 12:00 (UTC+03:00)" in message.text
    assert bot_api.buttons(message)[0][0]["callback_data"] == "p:m:2"


async def test_each_admin_reads_it_in_their_language(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        built = await network(session, bot_api, branches=2)
        built.branch_admins[0].language = "ru"
        built.branch_admins[1].language = None
        built.branch_admins[1].telegram_language = "en-GB"
        await session.commit()
    clock = MutableClock(END - 3 * DAY)
    await owe(session_factory, clock())

    await courier(bot_api_bot, session_factory, clock).deliver_due()

    [russian] = bot_api.messages(1001)
    [english] = bot_api.messages(1002)
    assert english.text.startswith("⏳ The demo of Branch 2 (b2.acme.ru) ends on 16.12.2026")
    assert "The demo of" not in russian.text
    assert "Branch 1 (b1.acme.ru)" in russian.text
    assert "16.12.2026 12:00 (UTC+03:00)" in russian.text


# Pace.


@pytest.mark.bot_api(enforce_rates=True)
async def test_the_pace_is_never_above_the_limit_in_any_second(
    bot_api: FakeBotAPI,
    bot_api_bot: Bot,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    rate = 20
    async with session_factory() as session:
        built = await network(session, bot_api, branches=45)
        # One branch is incompatible, a week from its disconnection: the head's admin gets
        # three messages (two about 44 demos, one about it), each a second apart at least.
        await session.execute(
            update(Portal)
            .where(Portal.id == built.branches[-1].id)
            .values(incompatible_until=END + 4 * DAY)
        )
        await session.commit()
    clock = MutableClock(END - 3 * DAY)
    assert await owe(session_factory, clock()) == 44 * 2 + 2

    loop = asyncio.get_running_loop()
    started = loop.time()
    delivered = await courier(bot_api_bot, session_factory, clock, rate).deliver_due()
    elapsed = loop.time() - started

    messages = len(sends(bot_api))
    assert delivered == 44 * 2 + 2 and messages == 45 + 3
    assert bot_api.max_sends_in_window(1.0) <= rate
    assert bot_api.max_sends_in_window(1.0, chat_id=HEAD_ADMIN) == 1
    assert len(bot_api.messages(HEAD_ADMIN)) == 3
    # Paced, not stalled (a busy machine may slow it down, never by half).
    assert elapsed < messages / rate * 2 + 1


@pytest.mark.parametrize(
    "latencies", [(0.001, 0.002, 0.004), (0.001, 0.002, 0.05, 0.3)], ids=["steady", "jittery"]
)
def test_the_pacer_keeps_any_window_within_the_limit_whatever_the_latency(
    latencies: tuple[float, ...],
) -> None:
    """A simulated clock: each request reaches Telegram some time before its answer comes."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(per_second=25, monotonic=lambda: now[0], sleep=sleep)
    chance = random.Random(4)
    arrivals: list[float] = []
    busy = 0.0

    async def send_all() -> None:
        nonlocal busy
        for number in range(1000):
            chat = number % 40
            await pacer.wait(chat)
            round_trip = chance.choice(latencies)
            arrivals.append(now[0] + round_trip * chance.random())
            now[0] += round_trip
            busy += round_trip
            pacer.finished(chat)

    asyncio.run(send_all())

    arrivals.sort()
    worst = max(
        sum(1 for moment in arrivals[index : index + 40] if moment - start < 1.0)
        for index, start in enumerate(arrivals)
    )
    assert worst <= 25
    if max(latencies) < 1 / 25:
        # Fast answers: the pace is what holds the sends back, and it is nearly reached.
        assert now[0] < 1000 / 25 * 1.02


# Restarts.


@asynccontextmanager
async def started_bot(
    api: FakeBotAPI, directory: Path, database_url: str, clock: MutableClock
) -> AsyncIterator[Application]:
    """The real application polling the stand-in, as `branchbot run` runs it."""
    settings = bot_settings(api, directory, database_url=database_url)
    app = await build_application(settings, clock=clock)
    polls_before = sum(1 for call in api.calls if call.method == "getUpdates")
    polling = asyncio.create_task(app.run_polling(handle_signals=False))
    await until(lambda: sum(1 for c in api.calls if c.method == "getUpdates") > polls_before)
    try:
        yield app
    finally:
        await app.dispatcher.stop_polling()
        await asyncio.wait_for(polling, timeout=10)


async def until(condition: Callable[[], bool], seconds: float = STARTING) -> None:
    """Wait for what the bot does in real time (it sends at its pace, not the test's clock)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the bot")
        await asyncio.sleep(0.02)


async def seeded(url: str, seed: Callable[[AsyncSession], Awaitable[object]]) -> None:
    """The database as the bot finds it when it starts."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            await seed(session)
    finally:
        await engine.dispose()


async def notices_at(url: str) -> list[Notice]:
    engine = create_engine(url)
    try:
        return await notices(create_session_factory(engine))
    finally:
        await engine.dispose()


async def test_a_reminder_missed_while_down_is_sent_once_at_start_up_and_opens_the_menu(
    bot_api: FakeBotAPI, tmp_path: Path, database_url: str
) -> None:
    await seeded(database_url, lambda session: network(session, bot_api, branches=1))
    # Down across the 7- and 3-day thresholds.
    clock = MutableClock(END - 2 * DAY)

    async with started_bot(bot_api, tmp_path, database_url, clock):
        await until(lambda: len(bot_api.messages(1001)) == 1 and bot_api.messages(HEAD_ADMIN))
        message = bot_api.messages(1001)[0]
        assert "ends on 16.12.2026 12:00 (UTC+03:00)" in message.text
        await bot_api.tap(1001, message, "Branch 1")
        menu = await bot_api.reply(1001)
        assert "Branch 1" in menu.text and "b1.acme.ru" in menu.text

    clock.advance(hours=6)
    async with started_bot(bot_api, tmp_path, database_url, clock) as app:
        await app.dispatcher["timed_changes"].run()
        await app.dispatcher["courier"].deliver_due()

    assert len(bot_api.messages(HEAD_ADMIN)) == 1
    # One message, which the tap turned into the branch's menu.
    assert len(bot_api.messages(1001)) == 1
    rows = await notices_at(database_url)
    assert [(row.kind, row.status) for row in rows] == [(DEMO_REMINDER, "sent")] * 2
    assert all('"lead_days": 3' in row.params for row in rows)


async def test_a_kill_in_the_middle_of_a_large_send_never_sends_a_reminder_twice(
    bot_api: FakeBotAPI, tmp_path: Path, database_url: str
) -> None:
    branches = 60
    # `branchbot run` keeps the real time; the demos end in a little over two days.
    demo_until = utc_now() + 2 * DAY + timedelta(hours=1)
    await seeded(
        database_url, lambda session: network(session, bot_api, branches, demo_until=demo_until)
    )
    environment = {
        **os.environ,
        "BOT_TOKEN": TEST_TOKEN,
        "BOT_API_URL": bot_api.base_url,
        "DATABASE_URL": database_url,
        "POLLING_TIMEOUT": "1",
        "SEND_RATE": "25",
        "LOG_LEVEL": "INFO",
    }
    log = (tmp_path / "bot.log").open("wb")

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=environment,
            stdout=log,
            stderr=log,
        )

    # The worst moment for a duplicate: Telegram has taken the 20th message, and the bot dies
    # before it hears so.
    kill_at = 20
    first = await start()
    second: asyncio.subprocess.Process | None = None
    # The stand-in has no hook for "right after taking a message", so its handler is wrapped.
    handlers = bot_api._handlers
    send_message = handlers["sendMessage"]

    async def take_then_kill(params: dict[str, Any]) -> dict[str, Any]:
        taken = await send_message(params)
        if len(bot_api.send_log) == kill_at:
            first.send_signal(signal.SIGKILL)
        return taken

    handlers["sendMessage"] = take_then_kill
    try:
        assert await asyncio.wait_for(first.wait(), timeout=STARTING) == -signal.SIGKILL
        assert len(bot_api.send_log) == kill_at

        second = await start()
        expected = branches + math.ceil(branches / 40)
        await until(lambda: len(bot_api.send_log) >= expected, seconds=STARTING)
        await asyncio.sleep(0.5)  # anything more would show up now
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), timeout=STARTING) == 0
    finally:
        handlers["sendMessage"] = send_message
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        log.close()

    assert len(bot_api.send_log) == expected
    for number in range(1, branches + 1):
        assert len(bot_api.messages(1000 + number)) == 1, number
    lines = [
        line
        for message in bot_api.messages(HEAD_ADMIN)
        for line in message.text.splitlines()
        if line.startswith("• ")
    ]
    assert len(lines) == len(set(lines)) == branches

    rows = await notices_at(database_url)
    assert len(rows) == branches * 2
    statuses = {row.status for row in rows}
    uncertain = [row for row in rows if row.status == "uncertain"]
    # The message in flight at the kill is set aside, not sent again: it did arrive.
    assert statuses == {"sent", "uncertain"}
    assert len({row.person_id for row in uncertain}) == 1
    assert b"were being sent when the bot stopped" in (tmp_path / "bot.log").read_bytes()


async def test_a_disconnect_reminder_through_the_running_bot(
    bot_api: FakeBotAPI, tmp_path: Path, database_url: str
) -> None:
    async def seed(session: AsyncSession) -> None:
        built = await network(session, bot_api, branches=2)
        for branch in built.branches:
            branch.incompatible_until = END
        await session.commit()

    await seeded(database_url, seed)
    clock = MutableClock(END - 8 * DAY)
    async with started_bot(bot_api, tmp_path, database_url, clock) as app:
        clock.now = END - DAY
        assert (await app.dispatcher["timed_changes"].run()).reminders_owed == 4
        await app.dispatcher["courier"].deliver_due()
        [digest] = bot_api.messages(HEAD_ADMIN)
        assert "2 branches will be disconnected from the network" in digest.text
        # The head's admin is on neither branch's staff: the button opens the network's card.
        await bot_api.tap(HEAD_ADMIN, digest, "Branch 2")
        card = await bot_api.reply(HEAD_ADMIN)
        assert "Branch 2" in card.text

        clock.now = END
        ended = await app.dispatcher["timed_changes"].run()
        await app.dispatcher["courier"].deliver_due()
    assert ended.disconnected == 2
    assert any(m.text for m in bot_api.messages(1001) if "disconnected" in m.text)
    kinds = [row.kind for row in await notices_at(database_url)]
    assert kinds.count(DISCONNECT_REMINDER) == 4
