"""Bot instances serving the webhook over real HTTP, and Telegram's side that posts to them.

The Bot API stand-in queues what people do as updates, as Telegram does; `TelegramPoster`
plays Telegram's webhook delivery: it takes those updates and posts their JSON to an
instance's webhook, with the secret header, and keeps the HTTP answers.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Application, build_application
from bot.webhook import SECRET_HEADER, WebhookServer
from services.clock import Clock
from storage.db import create_session_factory
from tests.botapi.server import FakeBotAPI
from tests.harness import bot_settings

WEBHOOK_URL = "https://bot.example.test/telegram/updates"
WEBHOOK_SECRET = "Webhook_secret-0123456789"


@dataclass
class Answer:
    status: int
    body: str


@dataclass
class WebhookInstance:
    """One running instance: its Application and the HTTP server in front of it."""

    app: Application
    server: WebhookServer
    http: aiohttp.ClientSession
    session_factory: async_sessionmaker[AsyncSession]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def post(
        self,
        update: dict[str, Any] | str,
        *,
        secret: str | None = WEBHOOK_SECRET,
        path: str = "/telegram/updates",
    ) -> Answer:
        """POST an update as Telegram does: JSON, with the secret header unless None."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        body = update if isinstance(update, str) else None
        async with self.http.post(
            self.base_url + path,
            json=None if isinstance(update, str) else update,
            data=body,
            headers=headers,
        ) as response:
            return Answer(response.status, await response.text())

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.base_url + path) as response:
            return response.status, await response.json()


@dataclass
class TelegramPoster:
    """Telegram's webhook delivery from the stand-in's queue: each update posted once, unless
    a test posts it again on purpose."""

    api: FakeBotAPI
    posted: set[int] = field(default_factory=set)

    def undelivered(self) -> list[dict[str, Any]]:
        return [u for u in self.api.pending_updates() if u["update_id"] not in self.posted]

    async def deliver(self, instance: WebhookInstance) -> list[Answer]:
        """Post every queued update not posted yet to `instance`, in order."""
        answers = []
        for update in self.undelivered():
            answers.append(await instance.post(update))
            self.posted.add(update["update_id"])
        return answers


@asynccontextmanager
async def webhook_instance(
    api: FakeBotAPI,
    directory: os.PathLike[str],
    database_url: str,
    clock: Clock,
    **overrides: Any,
) -> AsyncIterator[WebhookInstance]:
    """An instance as `branchbot run --webhook` starts it, on a free port of 127.0.0.1."""
    settings = bot_settings(
        api,
        directory,
        database_url=database_url,
        update_mode="webhook",
        webhook_url=WEBHOOK_URL,
        webhook_secret=WEBHOOK_SECRET,
        webhook_host="127.0.0.1",
        webhook_port=0,
        **overrides,
    )
    app = await build_application(settings, clock=clock)
    server = WebhookServer(app, settings.require_webhook())
    try:
        await server.start()
        async with aiohttp.ClientSession() as http:
            yield WebhookInstance(app, server, http, create_session_factory(app.engine))
    finally:
        await server.stop()
