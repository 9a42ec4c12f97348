"""Telegram's text rules: the HTML parse mode, text cleaning and UTF-16 lengths.

The rules follow what the Bot API does with a message text: entities are parsed first, then
control characters are replaced, the text is trimmed, and only then is its length checked, in
UTF-16 code units. Error texts are the ones Telegram puts after "can't parse entities: ", byte
offsets included, so a test can match on them as it would against the real service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_TEXT_UTF16",
    "EntityParseError",
    "ParsedText",
    "clean_text",
    "is_blank",
    "parse_html",
    "utf16_len",
]

MAX_TEXT_UTF16 = 4096

# Tags Telegram's HTML mode knows; anything else is refused rather than shown literally.
_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)
_SIMPLE_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# Telegram treats NUL as a separator too, which makes the end of the text behave like a space.
_SPACES = frozenset(" \t\r\n\v\f")
# Entities that carry data of their own survive even when they cover only whitespace.
_HIDDEN_DATA_TYPES = frozenset({"text_link", "text_mention", "custom_emoji"})
# Characters that Telegram does not count as content when deciding a text is empty.
_EMPTY_CHARS = frozenset(" \n\u00a0\u180e\u2800\u3164\ufeff\u2060\u200b\u200c\u200d\u200e\u200f")
_TG_USER_LINK = re.compile(r"^tg:(?://)?user\?id=(\d+)$", re.IGNORECASE)
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


class EntityParseError(ValueError):
    """The text cannot be parsed; the message is Telegram's own wording."""


@dataclass
class ParsedText:
    """Plain text and its entities, offsets and lengths in UTF-16 code units."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length of ``text`` as Telegram counts it: characters outside the BMP count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _byte_offset(text: str, index: int) -> int:
    # Telegram reports positions in bytes of the UTF-8 text, not in characters.
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode the character reference starting at ``text[pos] == '&'``.

    Returns the character and the position after the reference, or None when the ampersand is
    to be kept as it is. Like Telegram, the closing semicolon is optional and only the four XML
    names and numeric references are known.
    """
    end = pos + 1
    if text.startswith("#", end):
        end += 1
        value = 0
        if text.startswith("x", end):
            end += 1
            while end < len(text) and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < len(text) and text[end].isascii() and text[end].isdigit():
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if text.startswith(";", end):
        end += 1
    return char, end


def _checked_link(url: str) -> str | None:
    """The link Telegram keeps for ``<a href>``, or None when it silently drops it."""
    url = url.strip()
    if not url:
        return None
    match = _URL_SCHEME.match(url)
    if match is None:
        # A bare host such as "example.com" is taken as an HTTP link.
        if any(ch in _SPACES for ch in url) or "." not in url.split("/", 1)[0]:
            return None
        return "http://" + url + ("" if "/" in url else "/")
    if match.group(1).lower() in {"http", "https", "tg", "ton"}:
        return url
    return None


@dataclass
class _Open:
    tag: str
    argument: str
    offset: int
    text_index: int
    expandable: bool = False


class _HtmlParser:
    """Single pass over the source, mirroring the order of checks Telegram applies."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.out: list[str] = []
        self.out_len = 0  # characters in ``out``, to slice link texts
        self.u16 = 0
        self.stack: list[_Open] = []
        self.entities: list[dict[str, Any]] = []

    # -- low level helpers ------------------------------------------------------------------

    def _at(self, i: int) -> str:
        return self.src[i] if i < len(self.src) else ""

    def _is_space(self, i: int) -> bool:
        ch = self._at(i)
        return ch == "" or ch in _SPACES

    @staticmethod
    def _is_name_char(ch: str) -> bool:
        return ch != "" and ((ch.isascii() and ch.isalnum()) or ch in ".-")

    def _skip_spaces(self) -> None:
        while self.pos < len(self.src) and self.src[self.pos] in _SPACES:
            self.pos += 1

    def _emit(self, ch: str) -> None:
        self.out.append(ch)
        self.out_len += 1
        self.u16 += _units(ch)

    # -- parsing ----------------------------------------------------------------------------

    def parse(self) -> ParsedText:
        src = self.src
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "&":
                decoded = _decode_entity(src, self.pos)
                if decoded is not None:
                    char, self.pos = decoded
                    if 0xD800 <= ord(char) <= 0xDFFF:
                        raise EntityParseError(
                            "Text contains invalid Unicode characters after decoding HTML "
                            "entities, check for unmatched surrogate code units"
                        )
                    self._emit(char)
                    continue
            if ch != "<":
                self._emit(ch)
                self.pos += 1
                continue
            if self._at(self.pos + 1) == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"'
            )
        # Inline code keeps no language; only <pre> blocks do.
        for entity in self.entities:
            if entity["type"] == "code":
                entity.pop("language", None)
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return ParsedText("".join(self.out), self.entities)

    def _start_tag(self) -> None:
        begin = self.pos
        offset = _byte_offset(self.src, begin)
        self.pos += 1
        while not self._is_space(self.pos) and self._at(self.pos) != ">":
            self.pos += 1
        if self.pos >= len(self.src):
            raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
        tag = self.src[begin + 1 : self.pos].lower()
        if tag not in _TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {offset}')

        argument = ""
        expandable = False
        while self._at(self.pos) != ">":
            self._skip_spaces()
            if self._at(self.pos) == ">":
                break
            name_begin = self.pos
            while not self._is_space(self.pos) and self._at(self.pos) not in ("=", ">"):
                self.pos += 1
            name = self.src[name_begin : self.pos]
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {offset}'
                )
            self._skip_spaces()
            if self._at(self.pos) != "=":
                # The only attribute Telegram takes without a value.
                if tag == "blockquote" and name.lower() == "expandable":
                    expandable = True
                    continue
                raise EntityParseError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{tag}" at byte offset {offset}'
                )
            self.pos += 1
            self._skip_spaces()
            if self.pos >= len(self.src):
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {offset}')
            value = self._attribute_value()
            if self.pos >= len(self.src):
                raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
            if tag == "a" and name == "href":
                argument = value
            elif tag == "code" and name == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif tag == "span" and name == "class" and value.startswith("tg-"):
                argument = value[len("tg-") :]
            elif tag == "tg-emoji" and name == "emoji-id":
                argument = value
        self.pos += 1  # the closing '>'

        if tag == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {offset}'
            )
        self.stack.append(_Open(tag, argument, self.u16, self.out_len, expandable))

    def _attribute_value(self) -> str:
        quote = self._at(self.pos)
        if quote not in ("'", '"'):
            token_begin = self.pos
            while self._is_name_char(self._at(self.pos)):
                self.pos += 1
            if not self._is_space(self.pos) and self._at(self.pos) != ">":
                token_offset = _byte_offset(self.src, token_begin)
                raise EntityParseError(
                    f"Unexpected end of name token at byte offset {token_offset}"
                )
            return self.src[token_begin : self.pos].lower()
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.src) and self.src[self.pos] != quote:
            if self.src[self.pos] == "&":
                decoded = _decode_entity(self.src, self.pos)
                if decoded is not None:
                    chars.append(decoded[0])
                    self.pos = decoded[1]
                    continue
            chars.append(self.src[self.pos])
            self.pos += 1
        if self._at(self.pos) == quote:
            self.pos += 1
        return "".join(chars)

    def _end_tag(self) -> None:
        begin = self.pos
        offset = _byte_offset(self.src, begin)
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {offset}")
        self.pos += 2
        name_begin = self.pos
        while not self._is_space(self.pos) and self._at(self.pos) != ">":
            self.pos += 1
        name = self.src[name_begin : self.pos].lower()
        self._skip_spaces()
        if self._at(self.pos) != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {offset}")
        self.pos += 1
        top = self.stack[-1]
        if name and name != top.tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {offset}, expected "</{top.tag}>", '
                f'found "</{name}>"'
            )
        self.stack.pop()
        if self.u16 > top.offset:
            self._close_entity(top)

    def _close_entity(self, top: _Open) -> None:
        base = {"offset": top.offset, "length": self.u16 - top.offset}
        tag = top.tag
        if tag in _SIMPLE_TYPES:
            self.entities.append({"type": _SIMPLE_TYPES[tag], **base})
        elif tag == "span":
            self.entities.append({"type": "spoiler", **base})
        elif tag == "tg-emoji":
            if not top.argument.isdigit() or int(top.argument) == 0:
                raise EntityParseError("Invalid custom emoji identifier specified")
            self.entities.append({"type": "custom_emoji", **base, "custom_emoji_id": top.argument})
        elif tag == "a":
            url = top.argument or "".join(self.out[top.text_index :])
            user = _TG_USER_LINK.match(url.strip())
            if user is not None:
                self.entities.append({"type": "text_mention", **base, "user_id": int(user[1])})
            else:
                link = _checked_link(url)
                if link is not None:
                    self.entities.append({"type": "text_link", **base, "url": link})
        elif tag == "pre":
            last = self.entities[-1] if self.entities else None
            if (
                last is not None
                and last["type"] == "code"
                and _same_span(last, base)
                and last.get("language")
            ):
                # <pre><code class="language-x"> is one pre block with a language.
                language = last.pop("language", None)
                last["type"] = "pre"
                if language:
                    last["language"] = language
            else:
                self.entities.append({"type": "pre", **base})
        elif tag == "code":
            last = self.entities[-1] if self.entities else None
            if (
                last is not None
                and last["type"] == "pre"
                and _same_span(last, base)
                and top.argument
            ):
                last["language"] = top.argument
            else:
                entity: dict[str, Any] = {"type": "code", **base}
                if top.argument:
                    entity["language"] = top.argument
                self.entities.append(entity)
        elif tag == "blockquote":
            kind = "expandable_blockquote" if top.expandable else "blockquote"
            self.entities.append({"type": kind, **base})


def _same_span(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["offset"] == b["offset"] and a["length"] == b["length"])


def parse_html(source: str) -> ParsedText:
    """Parse Telegram HTML into plain text and entities.

    Raises EntityParseError with Telegram's wording when the markup would be refused.
    """
    return _HtmlParser(source).parse()


def _cleaned_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\r":
        return ""
    if code < 32 and ch != "\n":
        return " "
    # Line and paragraph separators and direction overrides are removed by Telegram.
    if 0x2028 <= code <= 0x202E:
        return ""
    # So are combining vertical lines that would draw over neighbouring lines.
    if code in (0x0333, 0x033F, 0x030A):
        return ""
    return ch


def clean_text(text: str, entities: list[dict[str, Any]]) -> ParsedText:
    """Apply Telegram's cleaning and trimming to a parsed text.

    Control characters turn into spaces, carriage returns and a few invisible characters are
    dropped, and spaces and newlines are trimmed from both ends; entities are moved to match.
    Entities covering only whitespace disappear, as they do in Telegram.
    """
    # Map every UTF-16 position of the input to the position in the output.
    mapping: list[int] = []
    out: list[str] = []
    pos = 0
    for ch in text:
        for _ in range(_units(ch)):
            mapping.append(pos)
        kept = _cleaned_char(ch)
        out.append(kept)
        pos += utf16_len(kept)
    mapping.append(pos)
    cleaned = "".join(out)

    moved: list[dict[str, Any]] = []
    for entity in entities:
        start = mapping[min(entity["offset"], len(mapping) - 1)]
        end = mapping[min(entity["offset"] + entity["length"], len(mapping) - 1)]
        if end > start:
            moved.append({**entity, "offset": start, "length": end - start})

    units = _utf16_index(cleaned)
    moved = [e for e in moved if _keeps_entity(cleaned, units, e)]

    # Trim the end, then the start; the start is trimmed only up to the first entity.
    stripped_end = cleaned.rstrip(" \n")
    end_units = utf16_len(stripped_end)
    first_entity = min((e["offset"] for e in moved), default=end_units)
    lead = 0
    while lead < len(stripped_end) and stripped_end[lead] in " \n" and lead < first_entity:
        lead += 1
    final = stripped_end[lead:]
    result: list[dict[str, Any]] = []
    for entity in moved:
        start = entity["offset"]
        end = min(start + entity["length"], end_units)
        if end <= start:
            continue
        result.append({**entity, "offset": start - lead, "length": end - start})
    result.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText(final, result)


def _utf16_index(text: str) -> list[int]:
    """Character index for every UTF-16 position of ``text``, plus the end."""
    index: list[int] = []
    for i, ch in enumerate(text):
        index.extend([i] * _units(ch))
    index.append(len(text))
    return index


def _keeps_entity(text: str, units: list[int], entity: dict[str, Any]) -> bool:
    if entity["type"] in _HIDDEN_DATA_TYPES:
        return True
    start = units[entity["offset"]]
    end = units[min(entity["offset"] + entity["length"], len(units) - 1)]
    return any(ch not in " \n" for ch in text[start:end])


def is_blank(text: str) -> bool:
    """True when Telegram would consider the text empty."""
    return all(ch in _EMPTY_CHARS for ch in text)
