"""Telegram's limits on message texts, inline keyboards and command lists.

Each check returns Problems worded as Telegram answers them. Where Telegram reports a limit
through an error code of its own (BUTTON_DATA_INVALID and the like) the code is passed on
unchanged, as the Bot API does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .html import MAX_TEXT_UTF16, EntityParseError, clean_text, is_blank, parse_html, utf16_len
from .spec import Problem

__all__ = [
    "MAX_BUTTONS",
    "MAX_BUTTONS_PER_ROW",
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_COPY_TEXT",
    "MAX_START_PAYLOAD",
    "PreparedText",
    "check_commands",
    "check_inline_keyboard",
    "prepare_text",
]

MAX_BUTTONS = 100
MAX_BUTTONS_PER_ROW = 8
MAX_CALLBACK_DATA_BYTES = 64
MAX_COPY_TEXT = 256
MAX_START_PAYLOAD = 64
MAX_COMMANDS = 100
MAX_COMMAND_LENGTH = 32
MAX_COMMAND_DESCRIPTION = 256

_BUTTON_URL = re.compile(r"^(?:https?://[^\s/?#]+|tg://[^\s]+)[^\s]*$", re.IGNORECASE)
_START_PAYLOAD = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_START_PAYLOAD}}}$")
_COMMAND = re.compile(rf"^[a-z0-9_]{{1,{MAX_COMMAND_LENGTH}}}$")
_TME_HOSTS = frozenset({"t.me", "telegram.me", "telegram.dog"})

# The Bot API's own rendering of Telegram's REPLY_MARKUP_TOO_LONG, which is what an oversized
# keyboard (too many buttons overall or in one row) produces.
MARKUP_TOO_LONG = "Bad Request: reply markup is too long"


@dataclass
class PreparedText:
    """A message text as Telegram stores it, or the reasons it was refused."""

    text: str = ""
    entities: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Set when the text used a parse mode the stand-in does not implement.
    unsupported_mode: str | None = None


def prepare_text(
    text: Any, parse_mode: Any = None, entities: Any = None, *, what: str = "message text"
) -> PreparedText:
    """Parse, clean and measure a text the way sendMessage and editMessageText do."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    mode = str(parse_mode or "").strip().lower()
    if isinstance(entities, list) and entities:
        # Explicit entities take the place of a parse mode, as in Telegram.
        parsed_text, parsed_entities = text, [dict(e) for e in entities if isinstance(e, dict)]
        problem = _check_given_entities(parsed_text, parsed_entities)
        if problem is not None:
            return PreparedText(problems=[problem])
    elif mode == "html":
        try:
            parsed = parse_html(text)
        except EntityParseError as error:
            return PreparedText(
                problems=[
                    Problem(
                        f"invalid HTML in {what}: {error}",
                        f"Bad Request: can't parse entities: {error}",
                    )
                ]
            )
        parsed_text, parsed_entities = parsed.text, parsed.entities
    elif mode in ("markdown", "markdownv2"):
        name = "MarkdownV2" if mode == "markdownv2" else "Markdown"
        return PreparedText(
            problems=[
                Problem(
                    f"parse_mode {name} is not implemented by the stand-in; the bot uses HTML",
                    f"Bad Request: can't parse entities: {name} is not supported here",
                )
            ],
            unsupported_mode=name,
        )
    elif mode:
        return PreparedText(
            problems=[
                Problem(
                    f"unknown parse_mode {parse_mode!r}", "Bad Request: unsupported parse_mode"
                )
            ]
        )
    else:
        parsed_text, parsed_entities = text, []

    cleaned = clean_text(parsed_text, parsed_entities)
    if is_blank(cleaned.text):
        return PreparedText(
            problems=[Problem(f"{what} is empty", "Bad Request: message text is empty")]
        )
    length = utf16_len(cleaned.text)
    if length > MAX_TEXT_UTF16:
        return PreparedText(
            problems=[
                Problem(
                    f"{what} is {length} UTF-16 code units long, the limit is {MAX_TEXT_UTF16}",
                    "Bad Request: message is too long",
                )
            ]
        )
    return PreparedText(cleaned.text, cleaned.entities)


def _check_given_entities(text: str, entities: list[dict[str, Any]]) -> Problem | None:
    length = utf16_len(text)
    for entity in entities:
        offset, size = entity.get("offset"), entity.get("length")
        if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or size < 0:
            return Problem(
                f"malformed entity {entity!r}",
                "Bad Request: can't parse entities: entity offset and length must be numbers",
            )
        if offset + size > length:
            return Problem(
                f"entity {entity!r} ends after the text ({length} UTF-16 code units)",
                f"Bad Request: can't parse entities: Entity beginning at UTF-16 offset {offset} "
                f"ends after the end of the text at UTF-16 offset {offset + size}",
            )
    return None


def check_inline_keyboard(markup: Mapping[str, Any], bot_username: str) -> list[Problem]:
    """Limits on an InlineKeyboardMarkup that the type description alone does not show."""
    rows = markup.get("inline_keyboard")
    if not isinstance(rows, list):
        return []
    problems: list[Problem] = []
    total = sum(len(row) for row in rows if isinstance(row, list))
    if total > MAX_BUTTONS:
        problems.append(
            Problem(f"inline keyboard has {total} buttons, at most {MAX_BUTTONS}", MARKUP_TOO_LONG)
        )
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            continue
        if len(row) > MAX_BUTTONS_PER_ROW:
            problems.append(
                Problem(
                    f"inline keyboard row {index} has {len(row)} buttons, "
                    f"at most {MAX_BUTTONS_PER_ROW}",
                    MARKUP_TOO_LONG,
                )
            )
        for button in row:
            if isinstance(button, Mapping):
                problems.extend(_check_button(button, bot_username))
    return problems


def _check_button(button: Mapping[str, Any], bot_username: str) -> list[Problem]:
    label = button.get("text")
    problems: list[Problem] = []
    if label == "" or (isinstance(label, str) and not label.strip()):
        problems.append(Problem("button with an empty text", "Bad Request: BUTTON_TEXT_INVALID"))
    data = button.get("callback_data")
    if isinstance(data, str) and data:
        size = len(data.encode("utf-8"))
        if size > MAX_CALLBACK_DATA_BYTES:
            problems.append(
                Problem(
                    f"button {label!r}: callback_data is {size} bytes, "
                    f"at most {MAX_CALLBACK_DATA_BYTES}: {data!r}",
                    "Bad Request: BUTTON_DATA_INVALID",
                )
            )
    url = button.get("url")
    if isinstance(url, str) and url:
        problems.extend(_check_button_url(str(label), url, bot_username))
    copy = button.get("copy_text")
    if isinstance(copy, Mapping):
        copied = copy.get("text")
        if isinstance(copied, str) and not 1 <= len(copied) <= MAX_COPY_TEXT:
            problems.append(
                Problem(
                    f"button {label!r}: copy_text is {len(copied)} characters, "
                    f"1-{MAX_COPY_TEXT} allowed",
                    "Bad Request: BUTTON_COPY_TEXT_INVALID",
                )
            )
    return problems


def _check_button_url(label: str, url: str, bot_username: str) -> list[Problem]:
    if not _BUTTON_URL.match(url):
        return [
            Problem(
                f"button {label!r}: url {url!r} is not an http(s):// or tg:// URL",
                "Bad Request: BUTTON_URL_INVALID",
            )
        ]
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or parts.hostname not in _TME_HOSTS:
        return []
    query = parse_qs(parts.query, keep_blank_values=True)
    problems: list[Problem] = []
    for key in ("start", "startgroup"):
        for payload in query.get(key, []):
            if not _START_PAYLOAD.match(payload):
                problems.append(
                    Problem(
                        f"button {label!r}: {key} payload {payload!r} must be 1-"
                        f"{MAX_START_PAYLOAD} characters of A-Z, a-z, 0-9, _ and - "
                        f"(link to @{parts.path.strip('/') or bot_username})",
                        "Bad Request: START_PARAM_INVALID",
                    )
                )
    return problems


def check_commands(commands: Any) -> list[Problem]:
    """Limits on the list given to setMyCommands."""
    if not isinstance(commands, list):
        return []
    problems: list[Problem] = []
    if len(commands) > MAX_COMMANDS:
        problems.append(
            Problem(
                f"{len(commands)} commands, at most {MAX_COMMANDS}",
                "Bad Request: BOT_COMMANDS_TOO_MUCH",
            )
        )
    for command in commands:
        if not isinstance(command, Mapping):
            continue
        name = command.get("command")
        if isinstance(name, str) and not _COMMAND.match(name):
            problems.append(
                Problem(
                    f"command {name!r} must be 1-{MAX_COMMAND_LENGTH} characters of "
                    "lowercase English letters, digits and underscores",
                    "Bad Request: BOT_COMMAND_INVALID",
                )
            )
        description = command.get("description")
        if isinstance(description, str) and not (
            description.strip() and len(description) <= MAX_COMMAND_DESCRIPTION
        ):
            problems.append(
                Problem(
                    f"command {name!r}: description must be 1-{MAX_COMMAND_DESCRIPTION} "
                    f"characters, got {len(description)}",
                    "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
                )
            )
    return problems
