"""Which text each kind of notice gets, rendered in the recipient's language at send time.

A kind may also say when a notice owed earlier has lost its reason (checked just before it is
sent), and how several of its notices due to one person read together as one message.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.formatting import Text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.views import MESSAGE_LIMIT, utf16_length

# A notice's params as stored.
Params = dict[str, Any]

# Telegram allows 100 buttons under a message; a digest stays well below that.
DIGEST_BUTTONS = 40


@dataclass(frozen=True, slots=True)
class Rendered:
    """A notice's text with the buttons under it, one a row."""

    text: Text
    buttons: tuple[InlineKeyboardButton, ...] = ()


# The params, and the deployment's time zone for the instants among them.
Renderer = Callable[[Params, ZoneInfo], Text | Rendered]
# Why a notice owed earlier should no longer be sent (None while it still holds): the session,
# the recipient's person id, the params and the time of sending.
Obsolete = Callable[[AsyncSession, int, Params, datetime], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Digest:
    """How several notices of one kind due to one person read as one message.

    `heading` and `closing` get how many notices the message holds; `entry` is one notice's
    part (by default its own text). A lone notice is always sent in its own words.
    """

    heading: Callable[[int], Text | str] | None = None
    entry: Renderer | None = None
    closing: Callable[[int], Text | str] | None = None
    # Between one entry and the next; the heading and the closing stand a paragraph apart.
    between: str = "\n\n"


# The notices' own texts one after another.
JOINED = Digest()


@dataclass(frozen=True, slots=True)
class NoticeKind:
    render: Renderer
    obsolete: Obsolete | None = None
    digest: Digest | None = None


@dataclass(frozen=True, slots=True)
class Composed:
    """One message to send: it covers the first `covers` of the notices it was composed from."""

    text: Text
    markup: InlineKeyboardMarkup | None
    covers: int


RENDERERS: dict[str, Renderer] = {}
KINDS: dict[str, NoticeKind] = {}

R = TypeVar("R", bound=Renderer)


def renders(
    kind: str, *, obsolete: Obsolete | None = None, digest: Digest | None = None
) -> Callable[[R], R]:
    """Register the text of one kind of notice; params are what was stored with it.

    Without a digest each notice is a message of its own; with one, the notices of this kind
    due to one person at the same time go out together.
    """

    def register(function: R) -> R:
        RENDERERS[kind] = function
        KINDS[kind] = NoticeKind(render=function, obsolete=obsolete, digest=digest)
        return function

    return register


def compose(kind: NoticeKind, notices: list[Params], zone: ZoneInfo) -> list[Composed]:
    """The messages that carry these notices, in order, each within Telegram's limits."""
    if kind.digest is None or len(notices) == 1:
        return [_alone(kind.render(params, zone)) for params in notices]

    digest = kind.digest
    entry = digest.entry or kind.render
    parts = [_as_rendered(entry(params, zone)) for params in notices]
    messages: list[Composed] = []
    start = 0
    while start < len(parts):
        end = _fitting_end(digest, parts, start)
        messages.append(_digest_message(digest, parts[start:end]))
        start = end
    return messages


def _fitting_end(digest: Digest, parts: list[Rendered], start: int) -> int:
    """How far from `start` the parts still fit one message (at least one part)."""
    end = start + 1
    while end < len(parts) and end - start < DIGEST_BUTTONS:
        candidate = _digest_message(digest, parts[start : end + 1])
        if utf16_length(candidate.text.as_kwargs()["text"]) > MESSAGE_LIMIT:
            break
        end += 1
    return end


def _digest_message(digest: Digest, parts: list[Rendered]) -> Composed:
    pieces: list[str | Text] = []
    if digest.heading is not None:
        pieces += [digest.heading(len(parts)), "\n\n"]
    for index, part in enumerate(parts):
        if index:
            pieces.append(digest.between)
        pieces.append(part.text)
    if digest.closing is not None:
        pieces += ["\n\n", digest.closing(len(parts))]
    buttons = [button for part in parts for button in part.buttons]
    return Composed(Text(*pieces), _markup(buttons), covers=len(parts))


def _alone(content: Text | Rendered) -> Composed:
    rendered = _as_rendered(content)
    return Composed(rendered.text, _markup(list(rendered.buttons)), covers=1)


def _as_rendered(content: Text | Rendered) -> Rendered:
    return content if isinstance(content, Rendered) else Rendered(content)


def _markup(buttons: list[InlineKeyboardButton]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[[button] for button in buttons])
