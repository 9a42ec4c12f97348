"""Taking updates by Telegram's webhook, so that any number of instances can serve one bot.

Each instance serves the webhook path over plain HTTP behind a load balancer that terminates
TLS. A request must carry the secret Telegram was given (its `X-Telegram-Bot-Api-Secret-Token`
header); anything else is answered 401 and never reaches the bot. `GET /health` says whether
the instance can reach its database (and Redis, when dialogs are kept there), for the
balancer's health checks.

Every instance sets the webhook when it starts; setting the same URL and secret again changes
nothing at Telegram, and no instance removes it when it stops, so the others keep serving.

An update is claimed in the database before it is handled (see bot/dedupe.py). When the
database cannot be reached for the claim, the answer is 503 and Telegram sends the update
again later, so nothing is lost while it restarts.
"""

import asyncio
import logging
import signal
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import DRAIN_SECONDS, Application
from bot.config import HEALTH_PATH, Webhook
from bot.dedupe import CLAIMED, claim_update
from bot.reachability import wait_for_telegram
from services.clock import Clock
from storage.connectivity import Sleep, backoff_delays, describe_error, is_outage

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_TIMEOUT_SECONDS = 3.0

APPLICATION_KEY = web.AppKey("application", Application)


class ClaimingRequestHandler(SimpleRequestHandler):
    """aiogram's webhook handler, with the update claimed before it is handled.

    The answer goes out once the update is handled (not at once, with the handling left in the
    background), so an instance that is stopping finishes what it has answered for, and the
    balancer's timeouts see how long handling really takes.
    """

    # Limitation: an instance killed while handling an update has claimed it, so the copy
    # Telegram sends after the failed request is skipped: at most once, never twice.

    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        secret_token: str,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Clock,
        **data: Any,
    ) -> None:
        super().__init__(
            dispatcher, bot, handle_in_background=False, secret_token=secret_token, **data
        )
        self.session_factory = session_factory
        self.clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            logger.warning("a webhook request without the right secret was refused")
            return web.Response(status=401, text="Unauthorized")
        try:
            payload = await request.json(loads=self.bot.session.json_loads)
            update = Update.model_validate(payload, context={"bot": self.bot})
        except ValueError:
            logger.warning("a webhook request that is not an update was refused")
            return web.Response(status=400, text="Bad Request")

        try:
            first = await claim_update(self.session_factory, update.update_id, self.clock())
        except Exception as error:
            if not is_outage(error):
                raise
            # Telegram sends it again later, by when the database is back.
            logger.warning(
                "update %s not taken: the database is unavailable (%s)",
                update.update_id,
                describe_error(error),
            )
            return web.Response(status=503, text="Service Unavailable")
        if not first:
            logger.info("update %s came again; it was handled already", update.update_id)
            return web.json_response({})

        # The same handling data as polling gives, plus the mark that the claim is made.
        data = {"dispatcher": self.dispatcher, **self.data, CLAIMED: True}
        result: TelegramMethod[Any] | None = await self.dispatcher.feed_webhook_update(
            self.bot, update, **data
        )
        return web.Response(body=self._build_response_writer(bot=self.bot, result=result))


async def health(request: web.Request) -> web.Response:
    """200 when the database (and Redis, if used) answer within a few seconds, else 503."""
    application = request.app[APPLICATION_KEY]
    checks = {"database": await _check_database(application.engine)}
    storage = application.dispatcher.storage
    if isinstance(storage, RedisStorage):
        checks["redis"] = await _check_redis(storage)
    healthy = all(state == "ok" for state in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return web.json_response(body, status=200 if healthy else 503)


async def _check_database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        logger.warning("health check: the database is unavailable (%s)", describe_error(error))
        return "unavailable"
    return "ok"


async def _check_redis(storage: RedisStorage) -> str:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await storage.redis.ping()
    except Exception as error:
        logger.warning("health check: Redis is unavailable (%s)", type(error).__name__)
        return "unavailable"
    return "ok"


def create_webhook_app(application: Application, webhook: Webhook) -> web.Application:
    """The aiohttp application of one instance: the webhook path and /health."""
    dispatcher, bot = application.dispatcher, application.bot
    app = web.Application()
    app[APPLICATION_KEY] = application
    handler = ClaimingRequestHandler(
        dispatcher,
        bot,
        secret_token=webhook.secret,
        session_factory=dispatcher["session_factory"],
        clock=dispatcher["clock"],
    )
    app.router.add_post(webhook.path, handler.handle)
    app.router.add_get(HEALTH_PATH, health)

    async def start_dispatcher(_app: web.Application) -> None:
        await dispatcher.emit_startup(bot=bot, dispatcher=dispatcher, **dispatcher.workflow_data)

    # On cleanup, not on shutdown (as aiogram's setup_application does): aiohttp runs cleanup
    # after the updates in hand are finished, so they can still send their answers.
    async def stop_dispatcher(_app: web.Application) -> None:
        try:
            await dispatcher.emit_shutdown(
                bot=bot, dispatcher=dispatcher, **dispatcher.workflow_data
            )
        finally:
            await bot.session.close()

    app.on_startup.append(start_dispatcher)
    app.on_cleanup.append(stop_dispatcher)
    return app


async def set_webhook(
    bot: Bot,
    webhook: Webhook,
    allowed_updates: list[str],
    *,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Point Telegram at the webhook; harmless to repeat, retried while Telegram is away.

    Pending updates are kept: another instance may be serving them right now.
    """
    delay = backoff_delays(first=1.0, longest=30.0)
    attempt = 0
    while True:
        try:
            await bot.set_webhook(
                url=webhook.url,
                secret_token=webhook.secret,
                allowed_updates=allowed_updates,
                drop_pending_updates=False,
            )
        except TelegramRetryAfter as error:
            await sleep(error.retry_after)
        except (TelegramNetworkError, TelegramServerError) as error:
            wait = delay(attempt)
            logger.warning(
                "could not set the webhook (%s); trying again in %.0f s", error.message, wait
            )
            await sleep(wait)
            attempt += 1
        else:
            logger.info("Telegram sends updates to %s", webhook.url)
            return


class WebhookServer:
    """One instance serving the webhook: started, then stopped after the updates in hand."""

    def __init__(self, application: Application, webhook: Webhook) -> None:
        self.application = application
        self.webhook = webhook
        self.runner = web.AppRunner(
            create_webhook_app(application, webhook),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=DRAIN_SECONDS,
        )

    @property
    def port(self) -> int:
        """The port listened on (useful when WEBHOOK_PORT was 0: any free port)."""
        address = self.runner.addresses[0]
        return int(address[1])

    async def start(self) -> None:
        """Wait for Telegram, run the start-up hooks, listen, then set the webhook."""
        await wait_for_telegram(self.application.bot)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.webhook.host, self.webhook.port)
        await site.start()
        logger.info(
            "serving the webhook on %s:%s%s", self.webhook.host, self.port, self.webhook.path
        )
        await set_webhook(
            self.application.bot,
            self.webhook,
            self.application.dispatcher.resolve_used_update_types(),
        )

    async def stop(self) -> None:
        """Stop listening, finish the updates in hand, run the shut-down hooks.

        The webhook stays set: the other instances go on serving it.
        """
        try:
            await self.runner.cleanup()
        finally:
            # Closing twice is harmless; this covers a start that failed half-way.
            await self.application.bot.session.close()
            try:
                await self.application.dispatcher.storage.close()
            except Exception as error:
                logger.warning("could not close the dialog storage cleanly (%s)", error)
            await self.application.engine.dispose()


async def run_webhook(
    application: Application,
    *,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the webhook until SIGINT or SIGTERM (or `stop` is set), then stop cleanly."""
    server = WebhookServer(application, application.settings.require_webhook())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
    try:
        await server.start()
        await stop.wait()
        logger.info("stopping: finishing the updates in hand")
    finally:
        if handle_signals:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signal_number)
        await server.stop()
