"""Webhook mode over real HTTP: Telegram's JSON posted to the running server, secret checked."""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.config import SettingsError
from bot.webhook import SECRET_HEADER
from storage.models import ProcessedUpdate
from tests.botapi.server import TEST_TOKEN, FakeBotAPI
from tests.harness import MutableClock, bot_settings
from tests.webhooks import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    TelegramPoster,
    WebhookInstance,
    webhook_instance,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
async def instance(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str], database_url: str
) -> AsyncIterator[WebhookInstance]:
    async with webhook_instance(bot_api, tmp_path, database_url, MutableClock()) as running:
        yield running


async def claimed(instance: WebhookInstance) -> int:
    async with instance.session_factory() as session:
        return await session.scalar(select(func.count()).select_from(ProcessedUpdate)) or 0


async def test_the_instance_sets_the_webhook_with_its_secret_at_start(
    bot_api: FakeBotAPI, instance: WebhookInstance
) -> None:
    assert bot_api.webhook is not None
    assert bot_api.webhook["url"] == WEBHOOK_URL
    assert bot_api.webhook["secret_token"] == WEBHOOK_SECRET
    assert not bot_api.webhook.get("drop_pending_updates")
    assert set(bot_api.webhook["allowed_updates"]) >= {"message", "callback_query"}
    # The start-up hooks ran as they do when polling: the command menu is registered.
    assert [c["command"] for c in bot_api.my_commands(None, "en")][:1] == ["portals"]


async def test_an_update_with_the_right_secret_is_handled(
    bot_api: FakeBotAPI, instance: WebhookInstance
) -> None:
    telegram = TelegramPoster(bot_api)
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    await bot_api.send(stranger, "/start")

    [answer] = await telegram.deliver(instance)

    assert answer.status == 200
    # Handled before the answer: the greeting is already sent.
    assert "Hello!" in bot_api.messages(stranger)[0].text
    assert await claimed(instance) == 1


@pytest.mark.parametrize("secret", ["wrong-secret", "", None], ids=["wrong", "empty", "missing"])
async def test_an_update_without_the_right_secret_is_refused_and_not_handled(
    bot_api: FakeBotAPI, instance: WebhookInstance, secret: str | None
) -> None:
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    await bot_api.send(stranger, "/start")
    [update] = bot_api.pending_updates()

    answer = await instance.post(update, secret=secret)

    assert (answer.status, answer.body) == (401, "Unauthorized")
    assert bot_api.messages(stranger) == []
    # Not even claimed: Telegram's own delivery of it afterwards is handled normally.
    assert await claimed(instance) == 0
    assert (await instance.post(update)).status == 200
    assert len(bot_api.messages(stranger)) >= 1


async def test_a_body_that_is_no_update_is_refused(instance: WebhookInstance) -> None:
    assert (await instance.post("not json")).status == 400
    assert (await instance.post({"no": "update_id"})).status == 400
    assert await claimed(instance) == 0


async def test_other_paths_and_methods_are_not_the_webhook(
    bot_api: FakeBotAPI, instance: WebhookInstance
) -> None:
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    await bot_api.send(stranger, "/start")
    [update] = bot_api.pending_updates()

    assert (await instance.post(update, path="/")).status == 404
    async with instance.http.get(instance.base_url + "/telegram/updates") as response:
        assert response.status == 405
    assert bot_api.messages(stranger) == []


async def test_health_reports_the_database(instance: WebhookInstance) -> None:
    status, body = await instance.get("/health")

    assert status == 200
    assert body["status"] == "ok" and body["database"] == "ok"


async def test_webhook_mode_needs_its_url_and_secret(
    bot_api: FakeBotAPI, tmp_path: os.PathLike[str]
) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_URL is not set"):
        bot_settings(bot_api, tmp_path, webhook_url=None).require_webhook()
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET is not set"):
        bot_settings(bot_api, tmp_path, webhook_url=WEBHOOK_URL).require_webhook()
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET must be"):
        bot_settings(bot_api, tmp_path, webhook_secret="no spaces allowed")
    with pytest.raises(SettingsError, match="WEBHOOK_URL must be an https:// URL"):
        bot_settings(bot_api, tmp_path, webhook_url="http://bot.example.test/")
    webhook = bot_settings(
        bot_api, tmp_path, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET
    ).require_webhook()
    assert webhook.path == "/telegram/updates"
    assert WEBHOOK_SECRET not in repr(webhook)


async def test_branchbot_run_webhook_serves_until_sigterm_and_leaves_the_webhook_set(
    bot_api: FakeBotAPI, tmp_path: Path, database_url: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BOT_TOKEN", "DATABASE_URL", "BOT_API_URL", "REDIS_URL")
    }
    environment |= {
        "BOT_TOKEN": TEST_TOKEN,
        "BOT_API_URL": bot_api.base_url,
        "DATABASE_URL": database_url,
        "WEBHOOK_URL": WEBHOOK_URL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--webhook",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stranger = bot_api.user(31337, "Stranger", language_code="en")
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if bot_api.webhook is not None:
                    break
                await asyncio.sleep(0.05)
            assert bot_api.webhook is not None and bot_api.webhook["url"] == WEBHOOK_URL
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
            await bot_api.send(stranger, "/start")
            [update] = bot_api.pending_updates()
            async with http.post(
                f"http://127.0.0.1:{port}/telegram/updates",
                json=update,
                headers={SECRET_HEADER: WEBHOOK_SECRET},
            ) as response:
                assert response.status == 200
        assert "Hello!" in bot_api.messages(stranger)[0].text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert TEST_TOKEN.split(":")[1] not in log and WEBHOOK_SECRET not in log
    # Stopping leaves the webhook to the other instances.
    assert not any(call.method == "deleteWebhook" for call in bot_api.calls)
    assert bot_api.webhook is not None
