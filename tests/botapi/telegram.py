"""Telegram's side of the Bot API methods the stand-in simulates.

Each handler takes decoded parameters and returns the ``result`` Telegram would, or raises
``Refusal`` with Telegram's error. A refusal carries a ``violation`` text when the bot is to
blame for it; situations a correct bot meets in real life (a blocked user, an expired callback
query, a repeated edit) carry none.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .html import utf16_len
from .limits import check_commands, check_inline_keyboard, prepare_text
from .models import ApiCall, ApiError, CallbackAnswer, FakeChat, NotModified, SentMessage
from .spec import BotAPISpec, Problem, load_spec
from .world import World, inline_markup

__all__ = [
    "CONFLICT_POLL",
    "DEFAULT_USERNAME",
    "TEST_TOKEN",
    "QueryState",
    "Refusal",
    "TelegramSide",
    "bad_request",
]

log = logging.getLogger(__name__)

TEST_TOKEN = "123456:TEST-token_for_the_local_stand_in"
DEFAULT_USERNAME = "branchbot_test_bot"

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram leaves out unless a bot asks for them.
_NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_QUERY_INVALID = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
_MAX_CALLBACK_ANSWER = 200
# Methods named send* that do not put a message into the chat.
_NOT_SENDS = frozenset({"sendChatAction", "sendMessageDraft", "sendRichMessageDraft"})

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Refusal(Exception):
    """An error answer; ``violation`` explains it when the bot is to blame."""

    def __init__(
        self,
        error_code: int,
        description: str,
        *,
        violation: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.violation = violation
        self.retry_after = retry_after


def bad_request(problem: Problem) -> Refusal:
    return Refusal(400, problem.description, violation=problem.message)


@dataclass
class QueryState:
    query_id: str
    user_id: int
    chat_id: int | None
    message_id: int | None
    data: str
    created: float
    answered: bool = False
    stale: bool = False


@dataclass
class _Update:
    update_id: int
    kind: str
    payload: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {"update_id": self.update_id, self.kind: self.payload}


class TelegramSide(World):
    """Telegram's behaviour for the methods the stand-in simulates, without the HTTP layer.

    The options are described on FakeBotAPI, which is what tests construct.
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
        resolved_id = bot_id if bot_id is not None else int(token.split(":", 1)[0])
        super().__init__(bot_id=resolved_id, bot_username=username, bot_first_name=first_name)
        self.token = token
        self.spec = spec or load_spec()
        self.enforce_rates = enforce_rates
        self.per_chat_rate = per_chat_rate
        self.per_chat_burst = per_chat_burst
        self.group_rate_per_minute = group_rate_per_minute
        self.global_rate = global_rate
        self.callback_timeout = callback_timeout
        # With privacy mode on (Telegram's default) a bot in a group only hears commands,
        # mentions of itself and replies to its own messages.
        self.privacy_mode = privacy_mode

        self.calls: list[ApiCall] = []
        self.violations: list[str] = []
        self.not_modified: list[NotModified] = []
        self.errors: list[ApiError] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.unimplemented: list[ApiCall] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.webhook: dict[str, Any] | None = None
        # (monotonic time, chat id) of every message the bot was allowed to send.
        self.send_log: list[tuple[float, int]] = []

        self._queries: dict[str, QueryState] = {}
        self._query_ids = itertools.count(4_381_000_000_000_000_001)
        self._updates: list[_Update] = []
        self._update_ids = itertools.count(700_000_001)
        self._update_signal = asyncio.Event()
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._stopping = False
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
            "setChatMenuButton": self._set_chat_menu_button,
        }

    def _push(self, kind: str, payload: dict[str, Any]) -> None:
        self._updates.append(_Update(next(self._update_ids), kind, payload))
        self._notify_updates()

    def _notify_updates(self) -> None:
        signal, self._update_signal = self._update_signal, asyncio.Event()
        signal.set()

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued for the bot and not yet confirmed by a getUpdates offset."""
        return [u.to_api() for u in self._updates]

    # -- rates ------------------------------------------------------------------------------

    def max_sends_in_window(self, seconds: float = 1.0, chat_id: int | None = None) -> int:
        """The most messages the bot sent within any ``seconds``-long window."""
        times = [t for t, c in self.send_log if chat_id is None or c == chat_id]
        best = 0
        start = 0
        for end, moment in enumerate(times):
            while moment - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def _check_rate(self, chat: FakeChat) -> None:
        if not self.enforce_rates:
            return
        now = time.monotonic()
        times = [t for t, _ in self.send_log]
        chat_times = [t for t, c in self.send_log if c == chat.id]
        limits: list[tuple[list[float], int, float, str]] = [
            (chat_times, self.per_chat_rate + self.per_chat_burst, 1.0, f"chat {chat.id}"),
            (times, self.global_rate, 1.0, "all chats"),
        ]
        if chat.type in ("group", "supergroup"):
            limits.append((chat_times, self.group_rate_per_minute, 60.0, f"group {chat.id}"))
        for moments, allowed, window, where in limits:
            recent = moments[bisect.bisect_right(moments, now - window) :]
            if len(recent) >= allowed:
                retry = max(1, math.ceil(recent[0] + window - now))
                raise Refusal(
                    429,
                    f"Too Many Requests: retry after {retry}",
                    violation=f"more than {allowed} messages within {window:g}s to {where}",
                    retry_after=retry,
                )

    # -- chats ------------------------------------------------------------------------------

    def _find_chat(self, chat_id: Any) -> FakeChat:
        if isinstance(chat_id, str):
            name = chat_id.lstrip("@").lower()
            for candidate in self.chats.values():
                if candidate.type != "private" and (candidate.username or "").lower() == name:
                    return candidate
            raise Refusal(400, "Bad Request: chat not found")
        chat = self.chats.get(int(chat_id))
        if chat is None or (chat.type == "private" and chat.id not in self.started):
            raise Refusal(400, "Bad Request: chat not found")
        return chat

    def _writable_chat(self, chat_id: Any) -> FakeChat:
        """The chat to write to, or the refusal Telegram gives for it."""
        if isinstance(chat_id, int):
            if chat_id in self.deactivated:
                raise Refusal(403, "Forbidden: user is deactivated")
            if chat_id > 0 and chat_id in self.users and chat_id not in self.started:
                raise Refusal(403, "Forbidden: bot can't initiate conversation with a user")
        chat = self._find_chat(chat_id)
        if chat.type == "private" and chat.id in self.blocked:
            raise Refusal(403, "Forbidden: bot was blocked by the user")
        return chat

    def _user_dict(self, user_id: int) -> dict[str, Any]:
        person = self.users.get(user_id)
        if person is not None:
            return person.to_api()
        return {"id": user_id, "is_bot": False, "first_name": ""}

    # -- handlers ---------------------------------------------------------------------------

    async def _unsimulated(self, method: str, params: dict[str, Any]) -> bool:
        """Any other method of the API: accepted and answered with true, but not simulated.

        Methods that send a message still check the chat and count towards the rates, so a
        photo to a person who blocked the bot fails as it would for a text.
        """
        log.warning("%s is not simulated by the stand-in; answering true", method)
        if method.startswith("send") and method not in _NOT_SENDS and "chat_id" in params:
            chat = self._writable_chat(params["chat_id"])
            self._check_rate(chat)
            self.send_log.append((time.monotonic(), chat.id))
        return True

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise Refusal(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if "allowed_updates" in params and isinstance(params["allowed_updates"], list):
            self._allowed_updates = [str(kind) for kind in params["allowed_updates"]]
        self._poll_generation += 1
        generation = self._poll_generation
        # Wake an older long poll so that it notices it has been superseded.
        self._notify_updates()
        self._confirm(offset)
        deadline = time.monotonic() + timeout
        while True:
            if generation != self._poll_generation:
                # Telegram ends the older of two overlapping long polls this way.
                raise Refusal(409, CONFLICT_POLL)
            batch = self._deliverable(limit)
            if batch or self._stopping:
                return [u.to_api() for u in batch]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            signal = self._update_signal
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._updates = [u for u in self._updates if u.update_id >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

    def _deliverable(self, limit: int) -> list[_Update]:
        allowed = self._allowed_updates
        kept: list[_Update] = []
        for update in self._updates:
            wanted = update.kind not in _NOT_BY_DEFAULT if not allowed else update.kind in allowed
            if wanted:
                kept.append(update)
            else:
                log.debug(
                    "update %s (%s) not delivered: not in allowed_updates",
                    update.update_id,
                    update.kind,
                )
        # Telegram never queues updates of types the bot did not ask for.
        self._updates = kept
        return kept[:limit]

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            self.webhook = None
            return True
        if not url.lower().startswith("https://"):
            raise Refusal(
                400,
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
                violation=f"webhook URL {url!r} is not HTTPS",
            )
        self.webhook = {k: v for k, v in params.items() if k != "certificate"}
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook:
            for key in ("max_connections", "allowed_updates", "ip_address"):
                if key in self.webhook:
                    info[key] = self.webhook[key]
        return info

    # commands and menu

    def my_commands(
        self, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """The commands set for a scope and language, as getMyCommands would return them."""
        return list(self.commands.get((_scope_key(scope), language_code), []))

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        problems = check_commands(params.get("commands"))
        if problems:
            raise bad_request(problems[0])
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        commands = [
            {"command": c["command"], "description": c["description"]} for c in params["commands"]
        ]
        if commands:
            self.commands[key] = commands
        else:
            self.commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.my_commands(params.get("scope"), str(params.get("language_code") or ""))

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self.commands.pop(key, None)
        return True

    async def _set_chat_menu_button(self, params: dict[str, Any]) -> bool:
        chat_id = params.get("chat_id")
        if chat_id is not None:
            self._find_chat(chat_id)
        self.menu_buttons[chat_id] = dict(params.get("menu_button") or {"type": "default"})
        return True

    # messages

    def _checked_markup(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if not isinstance(markup, dict):
            return None
        if "inline_keyboard" in markup:
            problems = check_inline_keyboard(markup, self.bot_username)
            if problems:
                raise bad_request(problems[0])
            return inline_markup(_drop_nulls(markup))
        return dict(_drop_nulls(markup))

    def _checked_text(self, params: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        prepared = prepare_text(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        if prepared.problems:
            raise bad_request(prepared.problems[0])
        entities = [self._api_entity(e) for e in prepared.entities]
        return prepared.text, entities

    def _api_entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        if entity.get("type") == "text_mention" and "user_id" in entity:
            converted = {k: v for k, v in entity.items() if k != "user_id"}
            converted["user"] = self._user_dict(int(entity["user_id"]))
            return converted
        return entity

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        text, entities = self._checked_text(params)
        markup = self._checked_markup(params)
        chat = self._writable_chat(params["chat_id"])
        reply_to = self._reply_target(chat, params.get("reply_parameters"))
        self._check_rate(chat)
        sent = SentMessage(
            message_id=self._new_message_id(chat.id),
            chat_id=chat.id,
            text=text,
            html=str(params["text"]),
            parse_mode=params.get("parse_mode"),
            entities=entities,
            reply_markup=markup,
            date=int(time.time()),
        )
        self.send_log.append((time.monotonic(), chat.id))
        self._store_bot_message(sent)
        result = self.message_dict(sent)
        if reply_to is not None:
            result["reply_to_message"] = reply_to
        return result

    def _reply_target(self, chat: FakeChat, reply: Any) -> dict[str, Any] | None:
        if not isinstance(reply, dict) or "message_id" not in reply:
            return None
        message_id = int(reply["message_id"])
        bot_message = self._bot_message(chat.id, message_id)
        if bot_message is not None and not bot_message.deleted:
            return self.message_dict(bot_message)
        incoming = self._incoming_message(chat.id, message_id)
        if incoming is not None and not incoming.get("_deleted"):
            return {k: v for k, v in incoming.items() if not k.startswith("_")}
        if reply.get("allow_sending_without_reply"):
            return None
        raise Refusal(400, "Bad Request: message to be replied not found")

    def _editable(self, params: Mapping[str, Any]) -> SentMessage:
        if params.get("inline_message_id"):
            raise Refusal(
                400,
                "Bad Request: MESSAGE_ID_INVALID",
                violation="inline messages are not simulated by the stand-in",
            )
        if params.get("chat_id") in (None, ""):
            raise Refusal(400, "Bad Request: chat_id is empty", violation="edit without chat_id")
        if params.get("message_id") in (None, ""):
            raise Refusal(
                400,
                "Bad Request: message identifier is not specified",
                violation="edit without message_id",
            )
        chat = self._writable_chat(params["chat_id"])
        message_id = int(params["message_id"])
        message = self._bot_message(chat.id, message_id)
        if message is None:
            if self._incoming_message(chat.id, message_id) is not None:
                raise Refusal(
                    400,
                    "Bad Request: message can't be edited",
                    violation=f"edit of message {message_id}, which a person sent",
                )
            raise Refusal(
                400,
                "Bad Request: message to edit not found",
                violation=f"edit of message {message_id}, which does not exist in {chat.id}",
            )
        if message.deleted:
            by_person = (chat.id, message_id) in self._deleted_by_person
            raise Refusal(
                400,
                "Bad Request: message to edit not found",
                violation=None if by_person else f"edit of message {message_id} after deleting it",
            )
        return message

    def _apply_edit(
        self,
        method: str,
        message: SentMessage,
        text: str,
        html: str,
        parse_mode: str | None,
        entities: list[dict[str, Any]],
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        current = inline_markup(message.reply_markup)
        if text == message.text and entities == message.entities and markup == current:
            self.not_modified.append(NotModified(method, message.chat_id, message.message_id))
            raise Refusal(400, _NOT_MODIFIED)
        if text != message.text:
            message.previous_texts.append(message.text)
        message.text, message.html, message.parse_mode = text, html, parse_mode
        message.entities = entities
        # An edit without reply_markup removes the inline keyboard, as in Telegram.
        message.reply_markup = markup
        message.edited += 1
        message.edit_date = int(time.time())
        self._record("edited", message)
        return self.message_dict(message)

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        text, entities = self._checked_text(params)
        markup = self._checked_markup(params)
        message = self._editable(params)
        return self._apply_edit(
            "editMessageText",
            message,
            text,
            str(params["text"]),
            params.get("parse_mode"),
            entities,
            markup,
        )

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        markup = self._checked_markup(params)
        message = self._editable(params)
        return self._apply_edit(
            "editMessageReplyMarkup",
            message,
            message.text,
            message.html,
            message.parse_mode,
            message.entities,
            markup,
        )

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat = self._find_chat(params["chat_id"])
        message_id = int(params["message_id"])
        message = self._bot_message(chat.id, message_id)
        if message is not None:
            if message.deleted:
                raise Refusal(400, "Bad Request: message to delete not found")
            message.deleted = True
            self._record("deleted", message)
            return True
        incoming = self._incoming_message(chat.id, message_id)
        if incoming is not None:
            if incoming.get("_deleted"):
                raise Refusal(400, "Bad Request: message to delete not found")
            incoming["_deleted"] = True
            return True
        raise Refusal(
            400,
            "Bad Request: message to delete not found",
            violation=f"delete of message {message_id}, which never existed in {chat.id}",
        )

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params["callback_query_id"])
        query = self._queries.get(query_id)
        if query is None:
            raise Refusal(400, _QUERY_INVALID, violation=f"unknown callback query {query_id!r}")
        if query.answered:
            raise Refusal(
                400, _QUERY_INVALID, violation=f"callback query {query_id} answered twice"
            )
        if query.stale or time.monotonic() - query.created > self.callback_timeout:
            query.answered = True
            raise Refusal(400, _QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and utf16_len(text) > _MAX_CALLBACK_ANSWER:
            raise Refusal(
                400,
                "Bad Request: MESSAGE_TOO_LONG",
                violation=f"callback answer of {len(text)} characters, at most "
                f"{_MAX_CALLBACK_ANSWER}",
            )
        query.answered = True
        self.callback_answers.append(
            CallbackAnswer(
                query_id,
                text if isinstance(text, str) else None,
                bool(params.get("show_alert")),
                params.get("url"),
            )
        )
        return True

    def callback_answer(self, query_id: str) -> CallbackAnswer:
        """The answer the bot gave to a callback query."""
        for answer in self.callback_answers:
            if answer.query_id == query_id:
                return answer
        raise AssertionError(f"callback query {query_id} was not answered")

    async def wait_answered(
        self,
        query_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for the bot, not for a call we make
    ) -> CallbackAnswer:
        """Wait until the bot answers a callback query."""
        deadline = time.monotonic() + timeout
        while True:
            for answer in self.callback_answers:
                if answer.query_id == query_id:
                    return answer
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"callback query {query_id} was not answered within {timeout:g}s"
                )
            await asyncio.sleep(0.01)

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        action = str(params.get("action", ""))
        if action not in _CHAT_ACTIONS:
            raise Refusal(
                400,
                "Bad Request: wrong parameter action in request",
                violation=f"unknown chat action {action!r}",
            )
        chat = self._writable_chat(params["chat_id"])
        self.chat_actions.append((chat.id, action))
        return True

    async def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._find_chat(params["chat_id"])
        return {
            **chat.to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }


def _scope_key(scope: Any) -> str:
    if not isinstance(scope, Mapping) or not scope.get("type"):
        return "default"
    parts = [str(scope["type"])]
    for key in ("chat_id", "user_id"):
        if key in scope:
            value = scope[key]
            # 5 and "5" name the same chat, as they do for Telegram.
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            parts.append(f"{key}={value}")
    return ";".join(parts)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value
