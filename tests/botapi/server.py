"""A local Telegram Bot API stand-in served over real HTTP on 127.0.0.1.

The bot under test talks to it exactly as to api.telegram.org (aiogram is pointed at it with
``TelegramAPIServer.from_base(api.base_url)``), while tests play the people on the other side:
they send messages and press buttons, then read what the bot sent.

Answers and failures follow Telegram: the same result objects, the same HTTP statuses and the
same error texts. A request Telegram would refuse is refused here as well and, unless it is a
situation a correct bot can run into (a person blocked the bot, a callback query expired, an
injected failure), it is also written to ``violations`` so a test can insist on an empty list.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .models import ApiCall, ApiError
from .people import People
from .spec import BotAPISpec
from .telegram import (
    CONFLICT_POLL,
    DEFAULT_USERNAME,
    TEST_TOKEN,
    Refusal,
)

__all__ = ["DEFAULT_USERNAME", "TEST_TOKEN", "FakeBotAPI"]

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/bot([^/]+)/([A-Za-z0-9_]+)/?$")
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT_POLL,
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass
class _Failure:
    method: str
    error_code: int
    description: str
    retry_after: int | None
    remaining: int
    chat_id: int | None


class FakeBotAPI(People):
    """The stand-in: an aiohttp server plus the people and chats on Telegram's side.

    Rates are not enforced by default so that ordinary tests need not pace themselves; with
    ``enforce_rates=True`` sending more than ``per_chat_rate`` (+ ``per_chat_burst``) messages
    to one chat within a second, more than ``group_rate_per_minute`` to a group within a
    minute, or more than ``global_rate`` in total within a second is answered with 429. Every
    accepted send is timed either way, see ``max_sends_in_window``.
    """

    def __init__(
        self,
        token: str = TEST_TOKEN,
        *,
        username: str = DEFAULT_USERNAME,
        first_name: str = "BranchBot",
        bot_id: int | None = None,
        spec: BotAPISpec | None = None,
        enforce_rates: bool = False,
        per_chat_rate: int = 1,
        per_chat_burst: int = 0,
        group_rate_per_minute: int = 20,
        global_rate: int = 30,
        callback_timeout: float = 15.0,
        privacy_mode: bool = True,
    ) -> None:
        super().__init__(
            token,
            username=username,
            first_name=first_name,
            bot_id=bot_id,
            spec=spec,
            enforce_rates=enforce_rates,
            per_chat_rate=per_chat_rate,
            per_chat_burst=per_chat_burst,
            group_rate_per_minute=group_rate_per_minute,
            global_rate=global_rate,
            callback_timeout=callback_timeout,
            privacy_mode=privacy_mode,
        )
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns the base URL for aiogram."""
        if self._runner is not None:
            return self.base_url
        self._stopping = False
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancelling handlers on disconnect ends a long poll as soon as the bot gives it up.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner, self._socket = runner, sock
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        log.debug("Bot API stand-in listening on %s", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; pending long polls return at once."""
        self._stopping = True
        self._notify_updates()
        self._wake_waiters()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        match = _PATH.match(request.path)
        if match is None:
            self._violate(f"request to {request.path!r}, which is not a Bot API method URL")
            return self._error_response("?", {}, 404, "Not Found")
        token, requested = match.groups()
        if token != self.token:
            self._violate(f"{requested}: wrong bot token")
            return self._error_response(requested, {}, 401, "Unauthorized")
        try:
            raw = await _read_params(request)
        except Refusal as refusal:
            self._violate(f"{requested}: {refusal.violation}")
            return self._error_response(requested, {}, refusal.error_code, refusal.description)

        method = self.spec.method_name(requested)
        if method is None:
            self.calls.append(ApiCall(requested, dict(raw), time.monotonic()))
            self._violate(f"unknown method {requested!r}")
            return self._error_response(requested, dict(raw), 404, "Not Found")

        params, problems = self.spec.decode_params(method, raw)
        self.calls.append(ApiCall(method, params, time.monotonic()))
        log.debug("%s %s", method, params)
        problems = problems + self.spec.problems(method, params)
        if problems:
            for problem in problems:
                self._violate(problem.message)
            return self._error_response(method, params, 400, problems[0].description)

        injected = self._take_failure(method, params)
        if injected is not None:
            log.info("%s: injected %s %s", method, injected.error_code, injected.description)
            return self._error_response(
                method,
                params,
                injected.error_code,
                injected.description,
                retry_after=injected.retry_after,
            )

        handler = self._handlers.get(method)
        try:
            if handler is None:
                self.unimplemented.append(self.calls[-1])
                result = await self._unsimulated(method, params)
            else:
                result = await handler(params)
        except Refusal as refusal:
            if refusal.violation is not None:
                self._violate(f"{method}: {refusal.violation}")
            return self._error_response(
                method,
                params,
                refusal.error_code,
                refusal.description,
                retry_after=refusal.retry_after,
            )
        return web.json_response({"ok": True, "result": result})

    def _error_response(
        self,
        method: str,
        params: dict[str, Any],
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
    ) -> web.Response:
        self.errors.append(ApiError(method, error_code, description, params))
        body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=error_code)

    def _violate(self, message: str) -> None:
        log.warning("Bot API violation: %s", message)
        self.violations.append(message)

    def _diagnostics(self) -> Iterable[str]:
        if self.errors:
            yield "latest error answers of the stand-in:"
            for error in self.errors[-5:]:
                yield f"  {error.method}: {error.error_code} {error.description}"
        if self.violations:
            yield "violations so far:"
            for violation in self.violations[-5:]:
                yield f"  {violation}"

    # -- failure injection ------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
        *,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with an error instead.

        ``method`` "*" matches every method except getUpdates. A 429 carries
        ``retry_after`` (default 1 second) in its parameters, as Telegram's do. With
        ``chat_id`` only calls addressed to that chat fail.
        """
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        description = description or _DEFAULT_DESCRIPTIONS.get(error_code, "Bad Request")
        name = method if method == "*" else (self.spec.method_name(method) or method)
        self._failures.append(_Failure(name, error_code, description, retry_after, count, chat_id))

    def _take_failure(self, method: str, params: Mapping[str, Any]) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining <= 0:
                continue
            if failure.method != method and not (failure.method == "*" and method != "getUpdates"):
                continue
            if failure.chat_id is not None and params.get("chat_id") != failure.chat_id:
                continue
            failure.remaining -= 1
            return failure
        return None


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters from the query string and a JSON, urlencoded or multipart body."""
    params: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as error:
            raise Refusal(
                400,
                "Bad Request: can't parse JSON encoded request",
                violation=f"body is not valid JSON: {error}",
            ) from error
        if not isinstance(body, dict):
            raise Refusal(
                400,
                "Bad Request: can't parse JSON encoded request",
                violation="JSON body is not an object",
            )
        params.update(body)
        return params
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        uploads: dict[str, str] = {}
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = value
            else:
                uploads[key] = f"<file {getattr(value, 'filename', key)}>"
        for key, placeholder in uploads.items():
            # A file sent under its own parameter name stands for that parameter; others are
            # referenced through "attach://<name>" and are not parameters themselves.
            referenced = any(
                isinstance(v, str) and f"attach://{key}" in v for v in params.values()
            )
            if not referenced:
                params[key] = placeholder
        return params
    body_text = await request.text()
    if body_text.strip():
        raise Refusal(
            400,
            "Bad Request: unsupported content type",
            violation=f"body of type {request.content_type!r}",
        )
    return params
