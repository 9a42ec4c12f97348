"""The machine-readable Bot API description and request checks against it.

The stand-in refuses what the description does not allow: a method that does not exist, a
required parameter left out, a parameter or object field the API does not define. Telegram
itself ignores unknown parameters, but a bot that sends one is relying on something that has no
effect, so the stand-in reports it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "SPEC_ENV",
    "BotAPISpec",
    "Problem",
    "check_request",
    "default_spec_path",
    "load_spec",
]

SPEC_ENV = "BOT_API_SPEC"
SPEC_FILE = "bot-api-10.1.json"

_PRIMITIVES = frozenset({"Integer", "String", "Boolean", "Float", "True", "InputFile"})
_DISCRIMINANT = re.compile(r"(?:must be|always) \W?([a-z_]+)")
_INT = re.compile(r"^-?\d+$")
# Fields of InlineKeyboardButton that do not choose what the button does.
_BUTTON_DECORATION = frozenset({"text", "icon_custom_emoji_id", "style"})


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a request.

    ``message`` explains it to the person reading a test failure; ``description`` is what the
    stand-in answers over HTTP, worded the way Telegram words its 400 errors.
    """

    message: str
    description: str


def default_spec_path() -> Path:
    """``$BOT_API_SPEC`` if set, else ``shared/telegram`` next to the repository."""
    override = os.environ.get(SPEC_ENV)
    if override:
        return Path(override)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "telegram" / SPEC_FILE


class BotAPISpec:
    """Methods and types of the Bot API, with checks of request parameters."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.version: str = str(data.get("version", ""))
        self.methods: dict[str, dict[str, Any]] = dict(data["methods"])
        self.types: dict[str, dict[str, Any]] = dict(data["types"])
        # Telegram matches method names without regard to case.
        self._by_lower = {name.lower(): name for name in self.methods}

    @classmethod
    def from_file(cls, path: Path) -> BotAPISpec:
        with path.open(encoding="utf-8") as handle:
            return cls(json.load(handle))

    # -- lookups ----------------------------------------------------------------------------

    def method_name(self, name: str) -> str | None:
        """The canonical spelling of a method, or None if the API has no such method."""
        return self._by_lower.get(name.lower())

    def fields(self, method: str) -> dict[str, dict[str, Any]]:
        spec = self.methods[method]
        return {f["name"]: f for f in spec.get("fields", [])}

    def type_fields(self, type_name: str) -> dict[str, dict[str, Any]]:
        spec = self.types.get(type_name, {})
        return {f["name"]: f for f in spec.get("fields", [])}

    def returns(self, method: str) -> list[str]:
        return list(self.methods[method].get("returns", []))

    # -- decoding of form data --------------------------------------------------------------

    def decode_params(
        self, method: str, raw: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[Problem]]:
        """Turn transport values into typed ones, as Telegram reads form fields.

        Form fields arrive as strings: numbers and booleans are converted, and object or
        array fields are JSON texts to decode. JSON bodies already carry typed values, but a
        JSON-encoded string is accepted there too, as Telegram does.
        """
        fields = self.fields(method)
        params: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, value in raw.items():
            spec = fields.get(name)
            if spec is None:
                params[name] = value
                continue
            decoded, problem = _decode_value(name, value, spec["types"])
            if problem is not None:
                problems.append(problem)
                continue
            params[name] = decoded
        return params, problems

    # -- checks -----------------------------------------------------------------------------

    def problems(self, method: str, params: Mapping[str, Any]) -> list[Problem]:
        """Everything in the request that the API description does not allow."""
        canonical = self.method_name(method)
        if canonical is None:
            return [Problem(f"unknown method {method!r}", "Not Found")]
        found: list[Problem] = []
        fields = self.fields(canonical)
        for name, spec in fields.items():
            if spec.get("required") and _is_missing(params.get(name)):
                found.append(
                    Problem(
                        f"{canonical}: missing required parameter {name!r}",
                        _missing_description(canonical, name),
                    )
                )
        for name, value in params.items():
            declared = fields.get(name)
            if declared is None:
                found.append(
                    Problem(
                        f"{canonical}: unknown parameter {name!r}",
                        f'Bad Request: unknown parameter "{name}"',
                    )
                )
                continue
            if value is not None:
                self._check_value(value, declared["types"], f"{canonical}: {name}", found)
        return found

    def _check_value(self, value: Any, types: list[str], where: str, out: list[Problem]) -> None:
        arrays = [t[len("Array of ") :] for t in types if t.startswith("Array of ")]
        if isinstance(value, list):
            if not arrays:
                if not any(t in _PRIMITIVES for t in types):
                    out.append(_shape(where, f"must be one of {', '.join(types)}, not an Array"))
                return
            for index, item in enumerate(value):
                self._check_value(item, arrays, f"{where}[{index}]", out)
            return
        objects = [t for t in types if t in self.types]
        if isinstance(value, dict):
            if not objects:
                if arrays:
                    out.append(_shape(where, "must be an Array"))
                return
            chosen = self._choose_type(value, objects)
            if chosen is not None:
                self._check_object(value, chosen, where, out)
            return
        if objects and not any(t in _PRIMITIVES for t in types) and not arrays:
            out.append(_shape(where, f"must be an Object of type {' or '.join(objects)}"))
        elif arrays and not objects and not any(t in _PRIMITIVES for t in types):
            out.append(_shape(where, "must be an Array"))

    def _choose_type(self, value: Mapping[str, Any], candidates: list[str]) -> str | None:
        """Pick the type an object is meant to be, following ``type`` discriminators."""
        concrete: list[str] = []
        for name in candidates:
            subtypes = self.types[name].get("subtypes")
            concrete.extend(subtypes if subtypes else [name])
        if len(concrete) == 1:
            return concrete[0]
        for name in concrete:
            fields = self.type_fields(name)
            discriminated = False
            matches = True
            for field_name, spec in fields.items():
                match = _DISCRIMINANT.search(spec.get("description", ""))
                if spec.get("required") and match and field_name in ("type", "status", "source"):
                    discriminated = True
                    matches = matches and value.get(field_name) == match.group(1)
            if discriminated and matches:
                return name
        for name in concrete:
            fields = self.type_fields(name)
            required = {n for n, spec in fields.items() if spec.get("required")}
            if required and required <= set(value) and set(value) <= set(fields):
                return name
        for name in concrete:
            fields = self.type_fields(name)
            required = {n for n, spec in fields.items() if spec.get("required")}
            if required and required <= set(value):
                return name
        return None

    def _check_object(
        self, value: Mapping[str, Any], type_name: str, where: str, out: list[Problem]
    ) -> None:
        fields = self.type_fields(type_name)
        for name, spec in fields.items():
            if spec.get("required") and name not in value:
                out.append(
                    Problem(
                        f"{where}: {type_name} lacks required field {name!r}",
                        f"Bad Request: can't parse {type_name}: Can't find field \"{name}\"",
                    )
                )
        for name, item in value.items():
            declared = fields.get(name)
            if declared is None:
                out.append(
                    Problem(
                        f"{where}: {type_name} has no field {name!r}",
                        f'Bad Request: can\'t parse {type_name}: unknown field "{name}"',
                    )
                )
            elif item is not None:
                self._check_value(item, declared["types"], f"{where}.{name}", out)
        if type_name == "InlineKeyboardButton":
            self._check_button_kind(value, set(fields), where, out)

    def _check_button_kind(
        self, button: Mapping[str, Any], known: set[str], where: str, out: list[Problem]
    ) -> None:
        # Telegram treats an empty url or callback_data as absent, so such a button has no
        # action at all and is refused as a plain text button.
        kinds = [
            name
            for name, item in button.items()
            if name in known
            and name not in _BUTTON_DECORATION
            and item is not None
            and not (name in ("url", "callback_data") and item == "")
        ]
        if not kinds:
            out.append(
                Problem(
                    f"{where}: button {button.get('text')!r} has no action",
                    "Bad Request: can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard",
                )
            )
        elif len(kinds) > 1:
            # Telegram would quietly use one of them; the button would not do what it says.
            out.append(
                Problem(
                    f"{where}: button {button.get('text')!r} has several actions: "
                    f"{', '.join(sorted(kinds))}",
                    "Bad Request: can't parse inline keyboard button: exactly one of the "
                    "optional fields must be used",
                )
            )


def _shape(where: str, what: str) -> Problem:
    return Problem(f"{where} {what}", f"Bad Request: {where.split(': ', 1)[-1]} {what}")


def _is_missing(value: Any) -> bool:
    return value is None or value == ""


def _missing_description(method: str, name: str) -> str:
    # The texts Telegram uses for the parameters bots most often forget.
    if name == "chat_id":
        return "Bad Request: chat_id is empty"
    if name == "text" and method in ("sendMessage", "editMessageText"):
        return "Bad Request: message text is empty"
    if name == "message_id":
        return "Bad Request: message identifier is not specified"
    return f'Bad Request: parameter "{name}" is required'


def _decode_value(name: str, value: Any, types: list[str]) -> tuple[Any, Problem | None]:
    if not isinstance(value, str):
        return value, None
    structured = [t for t in types if t.startswith("Array of ") or t not in _PRIMITIVES]
    if structured and "String" not in types:
        try:
            return json.loads(value), None
        except ValueError:
            what = "reply keyboard markup" if name == "reply_markup" else name
            return None, Problem(
                f"{name}: not valid JSON: {value[:80]!r}",
                f"Bad Request: can't parse {what} JSON object",
            )
    if types == ["Boolean"] or types == ["True"]:
        return value.strip().lower() in ("true", "yes", "1"), None
    if "Integer" in types and _INT.match(value.strip()):
        return int(value.strip()), None
    if types == ["Integer"]:
        return None, Problem(
            f"{name}: {value!r} is not an Integer",
            f'Bad Request: wrong parameter "{name}" of type Integer',
        )
    if types == ["Float"]:
        try:
            return float(value), None
        except ValueError:
            return None, Problem(
                f"{name}: {value!r} is not a Float",
                f'Bad Request: wrong parameter "{name}" of type Float',
            )
    return value, None


@lru_cache(maxsize=4)
def _load(path: str) -> BotAPISpec:
    return BotAPISpec.from_file(Path(path))


def load_spec(path: Path | None = None) -> BotAPISpec:
    """The API description, read once per file."""
    return _load(str(path or default_spec_path()))


def check_request(method: str, params: Mapping[str, Any]) -> list[str]:
    """Reasons the API description gives to refuse this request; empty when it is fine.

    ``params`` holds decoded values: objects as dicts and lists, not JSON texts.
    """
    return [problem.message for problem in load_spec().problems(method, params)]
