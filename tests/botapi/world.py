"""People, chats and messages as the stand-in remembers them, and waiting on the bot.

``World`` is the part of the stand-in that has nothing to do with HTTP: who exists, who talked
to the bot, what the bot sent and edited. Tests read it to see what a person would see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .models import FakeChat, FakeUser, SentMessage, button, buttons

__all__ = ["Event", "World"]

Predicate = Callable[[SentMessage], bool]


@dataclass(frozen=True)
class Event:
    """Something the bot did to a message: "sent", "edited" or "deleted"."""

    kind: str
    chat_id: int
    message_id: int
    time: float


class World:
    """State shared by the HTTP side and by the test side of the stand-in."""

    def __init__(self, *, bot_id: int, bot_username: str, bot_first_name: str) -> None:
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.users: dict[int, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        # People who opened a private chat with the bot; only they can be written to.
        self.started: set[int] = set()
        self.blocked: set[int] = set()
        self.deactivated: set[int] = set()
        self._bot_messages: dict[int, dict[int, SentMessage]] = {}
        # Messages people sent, as the update carried them, to reply to or delete.
        self._incoming: dict[int, dict[int, dict[str, Any]]] = {}
        # Messages a person deleted on their side; editing them is not the bot's fault.
        self._deleted_by_person: set[tuple[int, int]] = set()
        self._next_message_id: dict[int, int] = {}
        self.events: list[Event] = []
        self._event_signal = asyncio.Event()
        # Position in ``events`` just before the latest simulated person acted.
        self._last_action_mark = 0

    # -- registration -----------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        is_premium: bool = False,
    ) -> FakeUser:
        """Register a person. They can be written to only after they message the bot."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        person = FakeUser(
            user_id,
            first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
        )
        self.users[user_id] = person
        chat = self.chats.get(user_id)
        if chat is not None:
            chat.user = person
        return person

    def group(
        self, chat_id: int, title: str, *, type: str = "group", username: str | None = None
    ) -> FakeChat:
        """Register a group the bot is a member of (ids of groups are negative)."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        if type not in ("group", "supergroup"):
            raise ValueError("a group is of type 'group' or 'supergroup'")
        chat = FakeChat(chat_id, type, title=title, username=username)
        self.chats[chat_id] = chat
        return chat

    def block(self, user_id: int) -> None:
        """The person blocks the bot: sending to them fails with 403 from now on."""
        self.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def deactivate(self, user_id: int) -> None:
        """The person deletes their account: sending to them fails with 403."""
        self.deactivated.add(user_id)

    def _person(self, who: FakeUser | int) -> FakeUser:
        if isinstance(who, FakeUser):
            self.users.setdefault(who.id, who)
            return who
        person = self.users.get(who)
        if person is None:
            raise AssertionError(f"user {who} is not registered; call api.user() first")
        return person

    def _private_chat(self, person: FakeUser) -> FakeChat:
        chat = self.chats.get(person.id)
        if chat is None:
            chat = FakeChat(person.id, "private", user=person)
            self.chats[person.id] = chat
        return chat

    def _chat_of(self, chat: FakeChat | int | None, person: FakeUser) -> FakeChat:
        if chat is None:
            return self._private_chat(person)
        if isinstance(chat, FakeChat):
            self.chats.setdefault(chat.id, chat)
            return chat
        found = self.chats.get(chat)
        if found is None:
            raise AssertionError(f"chat {chat} is not registered; call api.group() first")
        return found

    # -- messages ---------------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _new_message_id(self, chat_id: int) -> int:
        # Telegram numbers the messages of a chat in one sequence for both sides.
        next_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = next_id + 1
        return next_id

    def _store_bot_message(self, message: SentMessage) -> None:
        self._bot_messages.setdefault(message.chat_id, {})[message.message_id] = message
        self._record("sent", message)

    def _store_incoming(self, chat_id: int, message: dict[str, Any]) -> None:
        self._incoming.setdefault(chat_id, {})[int(message["message_id"])] = message

    def _bot_message(self, chat_id: int, message_id: int) -> SentMessage | None:
        return self._bot_messages.get(chat_id, {}).get(message_id)

    def _incoming_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self._incoming.get(chat_id, {}).get(message_id)

    def _record(self, kind: str, message: SentMessage) -> None:
        self.events.append(Event(kind, message.chat_id, message.message_id, time.monotonic()))
        signal, self._event_signal = self._event_signal, asyncio.Event()
        signal.set()

    def _wake_waiters(self) -> None:
        signal, self._event_signal = self._event_signal, asyncio.Event()
        signal.set()

    def message_dict(self, message: SentMessage) -> dict[str, Any]:
        """The Message object Telegram returns for a bot message in its current state."""
        chat = self.chats[message.chat_id]
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self.bot_user(),
            "chat": chat.to_api(),
            "date": message.date,
        }
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        data["text"] = message.text
        if message.entities:
            data["entities"] = [dict(e) for e in message.entities]
        inline = inline_markup(message.reply_markup)
        if inline is not None:
            # Only inline keyboards belong to a message; reply keyboards belong to the chat.
            data["reply_markup"] = inline
        return data

    def user_deletes(self, message: SentMessage) -> None:
        """The person deletes a bot message on their side."""
        message.deleted = True
        self._deleted_by_person.add((message.chat_id, message.message_id))
        self._wake_waiters()

    # -- observation ------------------------------------------------------------------------

    def messages(self, chat_id: int | FakeUser | FakeChat) -> list[SentMessage]:
        """Every message the bot sent to a chat, in order, deleted ones included."""
        found = self._bot_messages.get(_chat_id(chat_id), {})
        return [found[key] for key in sorted(found)]

    def last(self, chat_id: int | FakeUser | FakeChat) -> SentMessage:
        """The newest message of the bot in a chat that is not deleted."""
        alive = [m for m in self.messages(chat_id) if not m.deleted]
        if not alive:
            raise AssertionError(f"the bot has no message in chat {_chat_id(chat_id)}")
        return alive[-1]

    def mark(self) -> int:
        """A position in the bot's activity; pass it as ``since`` to wait for what follows."""
        return len(self.events)

    def events_since(
        self, mark: int, chat_id: int | FakeUser | FakeChat | None = None
    ) -> list[Event]:
        """What the bot did to messages after ``mark``, optionally in one chat."""
        wanted = None if chat_id is None else _chat_id(chat_id)
        return [e for e in self.events[mark:] if wanted is None or e.chat_id == wanted]

    def _touched(self, mark: int, chat_id: int | None) -> list[SentMessage]:
        seen: dict[tuple[int, int], SentMessage] = {}
        for event in self.events[mark:]:
            if chat_id is not None and event.chat_id != chat_id:
                continue
            key = (event.chat_id, event.message_id)
            message = self._bot_message(*key)
            if message is not None and key not in seen:
                seen[key] = message
        return list(seen.values())

    async def wait_for(
        self,
        predicate: Predicate | None = None,
        *,
        chat_id: int | FakeUser | FakeChat | None = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - how long the bot may take, not an I/O timeout
        since: int | None = None,
    ) -> list[SentMessage]:
        """Wait until ``count`` bot messages sent or edited after ``since`` match.

        ``since`` defaults to the moment just before the latest simulated person acted
        (``api.send``, ``api.press``...), so ``await api.send(...)`` followed by
        ``await api.wait_for(...)`` sees the reply even if it came quickly. Messages are
        returned in their current state, in the order the bot first touched them; without a
        predicate, deleted messages do not count. On timeout an AssertionError lists what the
        bot did in the meantime.
        """
        mark = self._last_action_mark if since is None else since
        wanted = None if chat_id is None else _chat_id(chat_id)
        check: Predicate = predicate or (lambda m: not m.deleted)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            matching = [m for m in self._touched(mark, wanted) if check(m)]
            if len(matching) >= count:
                return matching[:count]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(self._timeout_report(mark, wanted, count, timeout, matching))
            signal = self._event_signal
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                continue

    async def replies(
        self,
        chat_id: int | FakeUser | FakeChat | None = None,
        *,
        since: int | None = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - how long the bot may take
    ) -> list[SentMessage]:
        """The first ``count`` messages the bot sent or edited in a chat after ``since``."""
        return await self.wait_for(
            None, chat_id=chat_id, count=count, timeout=timeout, since=since
        )

    async def reply(
        self,
        chat_id: int | FakeUser | FakeChat | None = None,
        *,
        since: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - how long the bot may take
    ) -> SentMessage:
        """The one message the bot sent or edited after ``since``."""
        [message] = await self.replies(chat_id, since=since, count=1, timeout=timeout)
        return message

    async def assert_silent(
        self,
        chat_id: int | FakeUser | FakeChat | None = None,
        *,
        since: int | None = None,
        seconds: float = 0.3,
    ) -> None:
        """Fail if the bot sends, edits or deletes anything within ``seconds``."""
        mark = self._last_action_mark if since is None else since
        await asyncio.sleep(seconds)
        wanted = None if chat_id is None else _chat_id(chat_id)
        events = self.events_since(mark, wanted)
        if events:
            shown = [self._describe_event(e) for e in events]
            raise AssertionError("the bot was expected to stay silent, but:\n" + "\n".join(shown))

    def _describe_event(self, event: Event) -> str:
        message = self._bot_message(event.chat_id, event.message_id)
        text = message.text if message is not None else "?"
        labels = message.button_texts() if message is not None else []
        extra = f" buttons={labels}" if labels else ""
        return f"  {event.kind} #{event.message_id} in chat {event.chat_id}: {text!r}{extra}"

    def _timeout_report(
        self,
        mark: int,
        chat_id: int | None,
        count: int,
        timeout: float,
        matching: list[SentMessage],
    ) -> str:
        where = "any chat" if chat_id is None else f"chat {chat_id}"
        lines = [
            f"expected {count} matching bot message(s) in {where} within {timeout:g}s, "
            f"got {len(matching)}; what the bot did since the mark:"
        ]
        events = self.events[mark:]
        if events:
            lines.extend(self._describe_event(e) for e in events)
        else:
            lines.append("  nothing")
        lines.extend(self._diagnostics())
        return "\n".join(lines)

    def _diagnostics(self) -> Iterable[str]:
        # The HTTP side adds its error log here, so a timeout shows why a reply never came.
        return []

    # -- buttons ----------------------------------------------------------------------------

    @staticmethod
    def buttons(message: SentMessage | dict[str, Any] | None) -> list[list[dict[str, Any]]]:
        return buttons(message)

    @staticmethod
    def button(message: SentMessage | dict[str, Any] | None, text_contains: str) -> dict[str, Any]:
        return button(message, text_contains)


def inline_markup(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """The inline keyboard of a markup, or None when there is no non-empty inline keyboard."""
    if not markup or not isinstance(markup.get("inline_keyboard"), list):
        return None
    rows = [list(row) for row in markup["inline_keyboard"] if isinstance(row, list) and row]
    if not rows:
        return None
    return {"inline_keyboard": rows}


def _chat_id(chat: int | FakeUser | FakeChat) -> int:
    if isinstance(chat, (FakeUser, FakeChat)):
        return chat.id
    return int(chat)
