"""What the stand-in knows about people, chats and the bot's messages, for tests to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "ApiCall",
    "ApiError",
    "CallbackAnswer",
    "FakeChat",
    "FakeUser",
    "NotModified",
    "SentMessage",
    "button",
    "buttons",
]


@dataclass
class FakeUser:
    """A person who may talk to the bot."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    is_premium: bool = False

    def to_api(self) -> dict[str, Any]:
        """The User object as Telegram sends it; absent fields are left out, not null."""
        data: dict[str, Any] = {
            "id": self.id,
            "is_bot": self.is_bot,
            "first_name": self.first_name,
        }
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        if self.is_premium:
            data["is_premium"] = True
        return data

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass
class FakeChat:
    """A chat the bot is in: a private chat with one person, or a group."""

    id: int
    type: str
    title: str | None = None
    user: FakeUser | None = None
    username: str | None = None

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            data["first_name"] = self.user.first_name
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
        else:
            if self.title is not None:
                data["title"] = self.title
            if self.username:
                data["username"] = self.username
        return data


@dataclass
class SentMessage:
    """The current state of one message the bot sent.

    ``text`` is the plain text as a person sees it (markup parsed, character references
    decoded); ``html`` is the text exactly as the bot sent it, before parsing.
    """

    message_id: int
    chat_id: int
    text: str
    html: str
    parse_mode: str | None
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    date: int = 0
    edit_date: int | None = None
    edited: int = 0
    deleted: bool = False
    # Earlier plain texts, oldest first, so a test can see what an edit replaced.
    previous_texts: list[str] = field(default_factory=list)

    def buttons(self) -> list[list[dict[str, Any]]]:
        return buttons(self)

    def button(self, text_contains: str) -> dict[str, Any]:
        return button(self, text_contains)

    def button_texts(self) -> list[str]:
        return [b.get("text", "") for row in buttons(self) for b in row]

    def entity_texts(self, entity_type: str) -> list[str]:
        """The pieces of text covered by entities of one type (e.g. "bold")."""
        units = self.text.encode("utf-16-le")
        return [
            units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
            for e in self.entities
            if e.get("type") == entity_type
        ]


class CallbackAnswer(NamedTuple):
    """How the bot answered a callback query."""

    query_id: str
    text: str | None
    show_alert: bool
    url: str | None = None


class ApiCall(NamedTuple):
    """One request the bot made; ``time`` is on the monotonic clock."""

    method: str
    params: dict[str, Any]
    time: float


@dataclass(frozen=True)
class ApiError:
    """One error answer the stand-in gave, whether deserved or injected."""

    method: str
    error_code: int
    description: str
    params: dict[str, Any]


@dataclass(frozen=True)
class NotModified:
    """An edit that changed nothing, which a correct bot may cause on a repeated tap."""

    method: str
    chat_id: int
    message_id: int


def buttons(message: SentMessage | dict[str, Any] | None) -> list[list[dict[str, Any]]]:
    """Rows of inline buttons of a message (a SentMessage or a reply_markup dict)."""
    markup = message.reply_markup if isinstance(message, SentMessage) else message
    if not markup:
        return []
    rows = markup.get("inline_keyboard") or []
    return [list(row) for row in rows]


def button(message: SentMessage | dict[str, Any] | None, text_contains: str) -> dict[str, Any]:
    """The one button whose text contains ``text_contains``; fails clearly otherwise."""
    found = [b for row in buttons(message) for b in row if text_contains in b.get("text", "")]
    if len(found) == 1:
        return found[0]
    labels = [b.get("text", "") for row in buttons(message) for b in row]
    if not found:
        raise AssertionError(f"no button with {text_contains!r} in its text; buttons: {labels}")
    raise AssertionError(
        f"{len(found)} buttons have {text_contains!r} in their text, expected one: {labels}"
    )
