"""A local Telegram Bot API stand-in for tests: real HTTP, Telegram's answers and limits."""

from .html import EntityParseError, clean_text, parse_html, utf16_len
from .models import (
    ApiCall,
    ApiError,
    CallbackAnswer,
    FakeChat,
    FakeUser,
    NotModified,
    SentMessage,
    button,
    buttons,
)
from .server import DEFAULT_USERNAME, TEST_TOKEN, FakeBotAPI
from .spec import BotAPISpec, check_request, load_spec

__all__ = [
    "DEFAULT_USERNAME",
    "TEST_TOKEN",
    "ApiCall",
    "ApiError",
    "BotAPISpec",
    "CallbackAnswer",
    "EntityParseError",
    "FakeBotAPI",
    "FakeChat",
    "FakeUser",
    "NotModified",
    "SentMessage",
    "button",
    "buttons",
    "check_request",
    "clean_text",
    "load_spec",
    "parse_html",
    "utf16_len",
]
