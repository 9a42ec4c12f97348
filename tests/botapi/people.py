"""The people on Telegram's side: what they write, share and tap, turned into updates."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from .html import utf16_len
from .models import FakeChat, FakeUser, SentMessage, button
from .telegram import QueryState, TelegramSide
from .world import inline_markup

__all__ = ["People"]

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"(?<![\w/<>])/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{3,32}))?(?![\w/<>])")


class People(TelegramSide):
    """Simulated people acting in chats with the bot."""

    def block(self, user_id: int, *, notify: bool = True) -> None:
        """The person blocks the bot; Telegram tells the bot with a my_chat_member update."""
        was_blocked = user_id in self.blocked
        super().block(user_id)
        if notify and not was_blocked and user_id in self.started:
            self._push_member_change(self._person(user_id), "member", "kicked")

    def make_stale(self, query_id: str) -> None:
        """Let a callback query expire, as if the bot took too long to answer it."""
        if query_id not in self._queries:
            raise AssertionError(f"no callback query {query_id!r} was made")
        self._queries[query_id].stale = True

    def deep_link(self, payload: str) -> str:
        """The t.me link that starts the bot with ``payload``."""
        return f"https://t.me/{self.bot_username}?start={payload}"

    async def send(
        self,
        user: FakeUser | int,
        text: str,
        *,
        chat: FakeChat | int | None = None,
        reply_to: SentMessage | int | None = None,
    ) -> int:
        """The person writes ``text``, in the private chat with the bot unless ``chat`` is given.

        Commands get a bot_command entity as Telegram adds them; returns the message id.
        """
        person = self._person(user)
        if person.id in self.deactivated:
            raise AssertionError(f"user {person.id} is deactivated and cannot write")
        target = self._chat_of(chat, person)
        entities = _command_entities(text)
        payload = self._incoming_base(person, target)
        payload["text"] = text
        if entities:
            payload["entities"] = entities
        if reply_to is not None:
            replied = self._resolve_bot_message(reply_to, target)
            payload["reply_to_message"] = self.message_dict(replied)
        return self._deliver_incoming(person, target, payload)

    async def send_contact(
        self,
        user: FakeUser | int,
        phone: str,
        user_id: int | Literal["self"] | None = "self",
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        chat: FakeChat | int | None = None,
    ) -> int:
        """The person shares a contact; by default their own, as the contact button does."""
        person = self._person(user)
        target = self._chat_of(chat, person)
        contact: dict[str, Any] = {
            "phone_number": phone,
            "first_name": first_name if first_name is not None else person.first_name,
        }
        # Sharing one's own contact carries one's own name.
        surname = last_name
        if surname is None and user_id == "self":
            surname = person.last_name
        if surname:
            contact["last_name"] = surname
        if user_id == "self":
            contact["user_id"] = person.id
        elif user_id is not None:
            contact["user_id"] = user_id
        payload = self._incoming_base(person, target)
        payload["contact"] = contact
        return self._deliver_incoming(person, target, payload)

    async def open_link(self, user: FakeUser | int, url: str) -> int:
        """The person follows a t.me link to this bot: Telegram sends "/start <payload>"."""
        parts = urlsplit(url)
        name = parts.path.strip("/")
        if parts.hostname not in ("t.me", "telegram.me") or name.lower() != (
            self.bot_username.lower()
        ):
            raise AssertionError(f"{url!r} is not a link to @{self.bot_username}")
        payload = parse_qs(parts.query).get("start", [""])[0]
        return await self.send(user, f"/start {payload}" if payload else "/start")

    async def press(
        self,
        user: FakeUser | int,
        message: SentMessage | int,
        callback_data: str,
        *,
        chat: FakeChat | int | None = None,
        check: bool = True,
    ) -> str:
        """The person taps a callback button of a bot message; returns the query id.

        With ``check`` the data must belong to a button the message shows now, since that is
        all a person can tap.
        """
        person = self._person(user)
        target = self._message_chat(message, chat, person)
        sent = self._resolve_bot_message(message, target)
        if sent.deleted:
            raise AssertionError(
                f"message {sent.message_id} is deleted; use press_inaccessible() for old buttons"
            )
        if check:
            shown = [
                b.get("callback_data")
                for row in (inline_markup(sent.reply_markup) or {}).get("inline_keyboard", [])
                for b in row
            ]
            if callback_data not in shown:
                raise AssertionError(
                    f"message {sent.message_id} has no button with callback_data "
                    f"{callback_data!r}; it shows {[d for d in shown if d is not None]}"
                )
        return self._push_query(
            person, target, self.message_dict(sent), sent.message_id, callback_data
        )

    async def press_inaccessible(
        self,
        user: FakeUser | int,
        message: SentMessage | int,
        callback_data: str,
        *,
        chat: FakeChat | int | None = None,
    ) -> str:
        """A tap on a message Telegram no longer gives the bot (it comes with date 0)."""
        person = self._person(user)
        target = self._message_chat(message, chat, person)
        message_id = message.message_id if isinstance(message, SentMessage) else int(message)
        stub = {"chat": target.to_api(), "message_id": message_id, "date": 0}
        return self._push_query(person, target, stub, message_id, callback_data)

    async def tap(self, user: FakeUser | int, message: SentMessage, text_contains: str) -> str:
        """Tap the callback button whose text contains ``text_contains``."""
        chosen = button(message, text_contains)
        if "callback_data" not in chosen:
            kinds = sorted(k for k in chosen if k not in ("text", "icon_custom_emoji_id", "style"))
            raise AssertionError(
                f"button {chosen.get('text')!r} is a {'/'.join(kinds) or 'plain'} button, "
                "tapping it sends nothing to the bot"
            )
        return await self.press(user, message, str(chosen["callback_data"]))

    def _message_chat(
        self, message: SentMessage | int, chat: FakeChat | int | None, person: FakeUser
    ) -> FakeChat:
        found = (
            self.chats[message.chat_id]
            if isinstance(message, SentMessage)
            else self._chat_of(chat, person)
        )
        if found.type == "private" and found.id != person.id:
            raise AssertionError(f"user {person.id} cannot see the private chat {found.id}")
        return found

    def _resolve_bot_message(self, message: SentMessage | int, chat: FakeChat) -> SentMessage:
        message_id = message.message_id if isinstance(message, SentMessage) else int(message)
        found = self._bot_message(chat.id, message_id)
        if found is None:
            raise AssertionError(f"the bot sent no message {message_id} to chat {chat.id}")
        return found

    def _incoming_base(self, person: FakeUser, chat: FakeChat) -> dict[str, Any]:
        return {
            "message_id": self._new_message_id(chat.id),
            "from": person.to_api(),
            "chat": chat.to_api(),
            "date": int(time.time()),
        }

    def _deliver_incoming(self, person: FakeUser, chat: FakeChat, payload: dict[str, Any]) -> int:
        self._last_action_mark = self.mark()
        if chat.type == "private":
            if person.id in self.blocked:
                # Writing to a blocked bot means restarting it, which unblocks it.
                self.blocked.discard(person.id)
                self._push_member_change(person, "kicked", "member")
            self.started.add(person.id)
        self._store_incoming(chat.id, payload)
        if chat.type == "private" or self._hears_in_group(payload):
            self._push("message", payload)
        else:
            log.debug("group message %s not delivered: privacy mode", payload["message_id"])
        return int(payload["message_id"])

    def _hears_in_group(self, payload: Mapping[str, Any]) -> bool:
        if not self.privacy_mode:
            return True
        text = str(payload.get("text", ""))
        for match in _COMMAND.finditer(text):
            addressee = match.group(2)
            if addressee is None or addressee.lower() == self.bot_username.lower():
                return True
        replied = payload.get("reply_to_message")
        if isinstance(replied, Mapping) and replied.get("from", {}).get("id") == self.bot_id:
            return True
        return f"@{self.bot_username.lower()}" in text.lower()

    def _push_query(
        self,
        person: FakeUser,
        chat: FakeChat,
        message: dict[str, Any],
        message_id: int,
        data: str,
    ) -> str:
        self._last_action_mark = self.mark()
        query_id = str(next(self._query_ids))
        self._queries[query_id] = QueryState(
            query_id, person.id, chat.id, message_id, data, time.monotonic()
        )
        self._push(
            "callback_query",
            {
                "id": query_id,
                "from": person.to_api(),
                "message": message,
                # Stable per chat, like Telegram's opaque chat_instance.
                "chat_instance": str((chat.id * 2_654_435_761) % 10**19),
                "data": data,
            },
        )
        return query_id

    def _push_member_change(self, person: FakeUser, old: str, new: str) -> None:
        bot = self.bot_user()

        def member(status: str) -> dict[str, Any]:
            data: dict[str, Any] = {"status": status, "user": bot}
            if status == "kicked":
                data["until_date"] = 0
            return data

        self._push(
            "my_chat_member",
            {
                "chat": self._private_chat(person).to_api(),
                "from": person.to_api(),
                "date": int(time.time()),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            },
        )


def _command_entities(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "bot_command",
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group(0)),
        }
        for match in _COMMAND.finditer(text)
    ]
