"""Connection problems are waited out, retried and logged; the process keeps running and loses
nothing. The database, Redis and the Bot API are put behind a relay that the test cuts."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from bot.app import build_application
from domain.rules import Plan, Role
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from tests import factories
from tests.botapi.server import FakeBotAPI
from tests.databases import REDIS_URL, needs_redis, postgresql_only
from tests.harness import MutableClock, bot_settings
from tests.outages import Relay
from tests.webhooks import TelegramPoster, webhook_instance

pytestmark = pytest.mark.e2e


@pytest.fixture
async def database_relay(database_url: str) -> AsyncIterator[tuple[Relay, str]]:
    """A relay in front of the test's PostgreSQL database, and the URL through it."""
    url = make_url(database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    relayed = url.set(host="127.0.0.1", port=relay.port)
    try:
        yield relay, relayed.render_as_string(hide_password=False)
    finally:
        await relay.stop()


@postgresql_only
async def test_start_up_waits_for_the_database(
    bot_api: FakeBotAPI,
    tmp_path: os.PathLike[str],
    database_relay: tuple[Relay, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay, url = database_relay
    await relay.cut()
    settings = bot_settings(bot_api, tmp_path, database_url=url)

    with caplog.at_level(logging.WARNING, logger="storage.connectivity"):
        starting = asyncio.create_task(build_application(settings, clock=MutableClock()))
        await asyncio.sleep(1.5)
        assert not starting.done()
        await relay.restore()
        app = await asyncio.wait_for(starting, timeout=30)
    await app.engine.dispose()
    await app.bot.session.close()

    assert "the database is unavailable" in caplog.text
    assert url.split("@")[0].split(":")[-1] not in caplog.text  # no password in the log


@postgresql_only
async def test_while_the_database_is_away_telegram_is_asked_to_send_the_update_again(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_relay: tuple[Relay, str]
) -> None:
    relay, url = database_relay
    telegram = TelegramPoster(bot_api)
    stranger = bot_api.user(31337, "Stranger", language_code="en")

    async with webhook_instance(bot_api, tmp_path, url, MutableClock()) as instance:
        await bot_api.send(stranger, "/start")
        [update] = bot_api.pending_updates()
        await relay.cut()

        assert (await instance.post(update)).status == 503
        status, body = await instance.get("/health")
        assert (status, body["database"]) == (503, "unavailable")
        assert bot_api.messages(stranger) == []
        # The scheduled jobs meet the outage too; the instance goes on serving.
        await asyncio.sleep(2.5)

        await relay.restore()
        # Telegram sends it again, as it does after any answer but 2xx.
        assert (await instance.post(update)).status == 200
        answered = len(bot_api.messages(stranger))
        assert answered >= 1 and "Hello!" in bot_api.messages(stranger)[0].text
        assert (await instance.post(update)).status == 200
        assert len(bot_api.messages(stranger)) == answered
        assert (await instance.get("/health"))[0] == 200

        await bot_api.send(stranger, "/help")
        assert [answer.status for answer in await telegram.deliver(instance)][-1] == 200


async def test_start_up_waits_for_the_bot_api(
    bot_api: FakeBotAPI,
    tmp_path: os.PathLike[str],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_port = int(bot_api.base_url.rsplit(":", 1)[1])
    relay = Relay("127.0.0.1", api_port)
    await relay.start()
    await relay.cut()
    # Telegram is reached through the relay, which is down at first.
    original = bot_api.base_url
    bot_api.base_url = f"http://127.0.0.1:{relay.port}"
    try:
        with caplog.at_level(logging.WARNING, logger="bot.reachability"):

            async def start_and_stop() -> None:
                async with webhook_instance(bot_api, tmp_path, database_url, MutableClock()):
                    pass

            starting = asyncio.create_task(start_and_stop())
            await asyncio.sleep(1.5)
            assert not starting.done() and bot_api.webhook is None
            await relay.restore()
            await asyncio.wait_for(starting, timeout=30)
    finally:
        bot_api.base_url = original
        await relay.stop()

    assert "the Bot API cannot be reached" in caplog.text
    assert bot_api.webhook is not None


@needs_redis
async def test_a_dialog_outlives_a_redis_outage(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> None:
    assert REDIS_URL is not None
    redis_url = make_url(REDIS_URL.replace("redis://", "postgresql://", 1))
    relay = Relay(redis_url.host or "127.0.0.1", redis_url.port or 6379)
    await relay.start()
    relayed = f"redis://127.0.0.1:{relay.port}/{redis_url.database or 0}"
    admin = bot_api.user(903, "Head", language_code="en")
    engine = create_engine(database_url)
    await upgrade(engine)
    async with create_session_factory(engine)() as session:
        head = await factories.portal(session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True)
        person = await factories.person(session, "Head Admin", 903)
        await factories.member(session, person, head, Role.ADMIN)
        await session.commit()
    await engine.dispose()
    telegram = TelegramPoster(bot_api)

    try:
        async with webhook_instance(
            bot_api, tmp_path, database_url, MutableClock(), redis_url=relayed
        ) as instance:
            await instance.app.dispatcher.storage.redis.flushdb()  # type: ignore[attr-defined]
            await bot_api.send(admin, "/newbranch")
            await telegram.deliver(instance)
            assert "What is the new portal called?" in bot_api.last(admin).text

            await relay.cut()
            await bot_api.send(admin, "Acme Omsk")
            [answer] = await telegram.deliver(instance)
            # The person is told to try again; the instance stays up.
            assert answer.status == 200
            assert "something went wrong" in bot_api.last(admin).text
            assert (await instance.get("/health"))[1]["redis"] == "unavailable"

            await relay.restore()
            await bot_api.send(admin, "Acme Omsk")
            await telegram.deliver(instance)
            assert bot_api.last(admin).text.startswith("Its address?")
            await instance.app.dispatcher.storage.redis.flushdb()  # type: ignore[attr-defined]
    finally:
        await relay.stop()
