"""The network file: portals, departments and people described in one JSON file.

Reading a file (`parse_network_file`) is pure and reports every problem at once. Importing it
(`import_network`) also checks the file against the database, and writes only when there is no
problem at all, so a rejected file leaves the database as it was.

What the file decides and what it leaves alone:

- A portal's name, plan and place in a network come from the file. Connecting follows the bot's
  rules: a newly connected branch is connected now, a free one gets its 15-day demo; a branch
  that stays connected keeps its dates.
- A person's name, email and phone come from the file: a key left out clears the value. Telegram
  id, username and language can also come from Telegram or the bot, so leaving them out keeps
  what is stored.
- The memberships and departments of the portals the file lists are exactly the file's. People
  are never removed, only their memberships.
- Telegram links, current portals (except one whose membership ends), invites, notices and the
  audit log are never written, and nobody is told anything.
"""

import difflib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.addresses import AddressError, canonical_address
from domain.rules import DEMO_LENGTH, Plan, PlanChange, Role, check_plan_change
from services.people import portal_facts
from services.phones import normalise_phone
from storage.models import Base, Department, Membership, Person, Portal, membership_departments

log = logging.getLogger(__name__)

TOP_KEYS: Final = ("portals", "departments", "people")
PORTAL_KEYS: Final = ("address", "name", "plan", "role", "network", "demo_until")
DEPARTMENT_KEYS: Final = ("portal", "id", "name", "parent", "head")
PERSON_KEYS: Final = (
    "telegram_id",
    "name",
    "username",
    "email",
    "phone",
    "language",
    "memberships",
)
MEMBERSHIP_KEYS: Final = ("portal", "role", "position", "department")
LANGUAGES: Final = ("ru", "en")

NAME_LENGTH: Final = 200
DEPARTMENT_ID_LENGTH: Final = 100
EMAIL_LENGTH: Final = 254
MAX_TELEGRAM_ID: Final = 2**63 - 1

EMAIL_PATTERN: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN: Final = re.compile(r"^\+?[0-9 ().-]+$")
USERNAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_]{4,32}$")

ADDRESS_REFUSALS: Final = {
    "empty": "is empty",
    "not_https": "must be a host name or an https:// address",
    "port": "must not have a port",
    "ip": "must be a host name, not an IP address",
    "malformed": "is not a host name",
}

# Well under the bound-parameter limits of SQLite (32766) and PostgreSQL (32767), so that a
# file of a few thousand people is looked up in one statement per kind of key.
LOOKUP_CHUNK: Final = 5000

T = TypeVar("T")
Row = TypeVar("Row", bound=Base)


# What an import reports.


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One breach of the rules, at the place in the file where it is."""

    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}"


class NetworkFileError(Exception):
    """The file is rejected whole; `problems` names every place that is wrong, in file order."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True, slots=True)
class Tally:
    """What an import did to one kind of row."""

    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What one import did, per kind of row; portals and people are never removed."""

    portals: Tally
    departments: Tally
    people: Tally
    memberships: Tally

    @property
    def changed(self) -> bool:
        return any(tally.changed for _, tally in self._rows())

    def lines(self) -> list[str]:
        """One line per kind of row, for printing; a last line when nothing changed."""
        lines = [
            f"{label + ':':<13} {tally.created} created, {tally.updated} updated, "
            f"{tally.removed} removed, {tally.unchanged} unchanged"
            for label, tally in self._rows()
        ]
        if not self.changed:
            lines.append("Nothing changed.")
        return lines

    def _rows(self) -> list[tuple[str, Tally]]:
        return [
            ("portals", self.portals),
            ("departments", self.departments),
            ("people", self.people),
            ("memberships", self.memberships),
        ]


@dataclass(slots=True)
class _Counter:
    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    def count(self, *, created: bool, changed: bool) -> None:
        if created:
            self.created += 1
        elif changed:
            self.updated += 1
        else:
            self.unchanged += 1

    def frozen(self) -> Tally:
        return Tally(self.created, self.updated, self.removed, self.unchanged)


# The file once it has passed every check that needs no database.


@dataclass(frozen=True, slots=True)
class PortalSpec:
    place: str
    address: str
    name: str
    plan: Plan
    is_head: bool
    network: str | None
    demo_until: datetime | None


# A department head or other person named in the file: a Telegram id, or an email.
PersonRef = int | str


@dataclass(frozen=True, slots=True)
class DepartmentSpec:
    place: str
    portal: str
    key: str
    name: str
    parent: str | None
    head: PersonRef | None


@dataclass(frozen=True, slots=True)
class MembershipSpec:
    place: str
    portal: str
    role: Role
    position: str | None
    departments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PersonSpec:
    place: str
    name: str
    telegram_id: int | None
    email: str | None
    phone: str | None
    username: str | None
    language: str | None
    memberships: tuple[MembershipSpec, ...]

    @property
    def first_portal(self) -> str | None:
        return self.memberships[0].portal if self.memberships else None

    @property
    def has_contact(self) -> bool:
        """Whether something other than the name recognises this person."""
        return self.telegram_id is not None or self.email is not None or self.phone is not None


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    portals: tuple[PortalSpec, ...]
    departments: tuple[DepartmentSpec, ...]
    people: tuple[PersonSpec, ...]


# Reading the file.


def load_file(path: Path) -> object:
    """The JSON value in the file; unreadable files and JSON syntax errors are problems too."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise NetworkFileError([FileProblem(str(path), "is not UTF-8 text")]) from None
    except OSError as error:
        message = error.strerror or str(error)
        raise NetworkFileError([FileProblem(str(path), message)]) from None

    duplicates: list[str] = []
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, duplicates))
    except json.JSONDecodeError as error:
        place = f"line {error.lineno}, column {error.colno}"
        raise NetworkFileError([FileProblem(place, error.msg)]) from None

    # The JSON parser keeps the last of two equal keys; a lost value must not pass silently.
    if duplicates:
        raise NetworkFileError(
            [
                FileProblem(str(path), f'key "{key}" appears twice in one object')
                for key in duplicates
            ]
        )
    return data


def _object(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    return result


def parse_network_file(data: object) -> NetworkPlan:
    """The file checked against every rule that needs no database; raises NetworkFileError."""
    if not isinstance(data, dict):
        raise NetworkFileError(
            [FileProblem("top level", "must be an object with portals, departments and people")]
        )

    reader = _Reader()
    reader.known_keys(data, "", TOP_KEYS)

    portals, heads = _read_portals(reader, data.get("portals"))
    portal_addresses = set(heads)
    departments, department_keys = _read_departments(
        reader, data.get("departments"), portal_addresses
    )
    people, staff = _read_people(reader, data.get("people"), portal_addresses, department_keys)

    _check_networks(reader, portals, heads)
    _check_parents(reader, departments)
    _check_department_heads(reader, departments, people, staff)

    if reader.problems:
        raise NetworkFileError(reader.problems)
    return NetworkPlan(tuple(portals), tuple(departments), tuple(people))


class _Reader:
    """Reads the file field by field, keeping a problem for every field that is wrong."""

    def __init__(self) -> None:
        self.problems: list[FileProblem] = []

    def add(self, place: str, message: str) -> None:
        self.problems.append(FileProblem(place, message))

    def known_keys(self, fields: Mapping[str, object], place: str, allowed: Sequence[str]) -> None:
        for key in fields:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "expected " + ", ".join(allowed)
            self.add(_at(place, key), f"unknown key; {hint}")

    def items(self, value: object, place: str) -> list[tuple[str, object]]:
        """The elements of an array with their places; an absent array is an empty one."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(place, f"must be an array, not {_json_type(value)}")
            return []
        return [(f"{place}[{index}]", item) for index, item in enumerate(value)]

    def fields(
        self, value: object, place: str, allowed: Sequence[str]
    ) -> Mapping[str, object] | None:
        if not isinstance(value, dict):
            self.add(place, f"must be an object, not {_json_type(value)}")
            return None
        self.known_keys(value, place, allowed)
        return value

    def text(
        self,
        fields: Mapping[str, object],
        key: str,
        place: str,
        *,
        required: bool = False,
        max_length: int = NAME_LENGTH,
    ) -> str | None:
        """A string, stripped; an optional one that is null or blank counts as left out."""
        value = fields.get(key)
        where = _at(place, key)
        if value is None:
            if required:
                self.add(where, "is required")
            return None
        if not isinstance(value, str):
            self.add(where, f"must be a string, not {_json_type(value)}")
            return None

        value = value.strip()
        if not value:
            if required:
                self.add(where, "must not be empty")
            return None
        if len(value) > max_length:
            self.add(where, f"is longer than {max_length} characters")
            return None
        return value

    def choice(
        self,
        fields: Mapping[str, object],
        key: str,
        place: str,
        options: Sequence[str],
        *,
        required: bool = False,
    ) -> str | None:
        value = self.text(fields, key, place, required=required)
        if value is None or value in options:
            return value
        expected = ", ".join(f'"{option}"' for option in options)
        self.add(_at(place, key), f'"{value}" is not one of {expected}')
        return None

    def address(
        self, fields: Mapping[str, object], key: str, place: str, *, required: bool = False
    ) -> str | None:
        raw = self.text(fields, key, place, required=required, max_length=2048)
        if raw is None:
            return None
        try:
            return canonical_address(raw)
        except AddressError as error:
            refusal = ADDRESS_REFUSALS.get(error.reason, "is not a portal address")
            self.add(_at(place, key), f'"{raw}" {refusal}')
            return None

    def instant(self, fields: Mapping[str, object], key: str, place: str) -> datetime | None:
        raw = self.text(fields, key, place, max_length=64)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            value = None
        if value is None or value.tzinfo is None:
            self.add(
                _at(place, key),
                f'"{raw}" is not an ISO 8601 date and time with a zone, '
                "such as 2027-01-15T09:00:00Z or 2027-01-15T12:00:00+03:00",
            )
            return None
        return value.astimezone(UTC)

    def telegram_id(self, fields: Mapping[str, object], key: str, place: str) -> int | None:
        value = fields.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            shown = value if isinstance(value, float) else _json_type(value)
            self.add(_at(place, key), f"must be a whole number, not {shown}")
            return None
        if not 0 < value <= MAX_TELEGRAM_ID:
            self.add(_at(place, key), f"{value} is not a Telegram id: it must be positive")
            return None
        return value

    def email(self, fields: Mapping[str, object], key: str, place: str) -> str | None:
        value = self.text(fields, key, place, max_length=EMAIL_LENGTH)
        if value is None:
            return None
        if not EMAIL_PATTERN.match(value):
            self.add(_at(place, key), f'"{value}" is not an email address')
            return None
        return value.lower()

    def phone(self, fields: Mapping[str, object], key: str, place: str) -> str | None:
        """A phone number kept in E.164, the form a shared contact is matched in."""
        value = self.text(fields, key, place, max_length=32)
        if value is None:
            return None
        phone = normalise_phone(value) if PHONE_PATTERN.match(value) else None
        if phone is None:
            self.add(_at(place, key), f'"{value}" is not a phone number')
        return phone

    def username(self, fields: Mapping[str, object], key: str, place: str) -> str | None:
        value = self.text(fields, key, place, max_length=64)
        if value is None:
            return None
        value = value.removeprefix("@")
        if not USERNAME_PATTERN.match(value):
            self.add(_at(place, key), f'"{value}" is not a Telegram username')
            return None
        return value

    def person_ref(self, fields: Mapping[str, object], key: str, place: str) -> PersonRef | None:
        value = fields.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return self.email(fields, key, place)
        if isinstance(value, int) and not isinstance(value, bool):
            return self.telegram_id(fields, key, place)
        self.add(_at(place, key), "must be a telegram_id (a number) or an email (a string)")
        return None

    def department_ids(
        self, fields: Mapping[str, object], key: str, place: str
    ) -> list[tuple[str, str]]:
        """A membership's departments with their places: one id, or an array of them."""
        value = fields.get(key)
        where = _at(place, key)
        if isinstance(value, list):
            found: list[tuple[str, str]] = []
            seen: set[str] = set()
            for item_place, item in self.items(value, where):
                if not isinstance(item, str) or not item.strip():
                    self.add(item_place, "must be a department id (a string)")
                    continue
                department = item.strip()
                if department in seen:
                    self.add(item_place, f'"{department}" is listed twice')
                    continue
                seen.add(department)
                found.append((item_place, department))
            return found

        if value is not None and not isinstance(value, str):
            self.add(where, "must be a department id or an array of them")
            return []
        single = self.text(fields, key, place, max_length=DEPARTMENT_ID_LENGTH)
        return [] if single is None else [(where, single)]


def _read_portals(
    reader: _Reader, value: object
) -> tuple[list[PortalSpec], dict[str, tuple[str, bool]]]:
    """The portals, and for every address the file gives a portal (even one with problems),
    its place and whether it is marked a head."""
    specs: list[PortalSpec] = []
    first_place: dict[str, str] = {}
    heads: dict[str, tuple[str, bool]] = {}

    for place, item in reader.items(value, "portals"):
        fields = reader.fields(item, place, PORTAL_KEYS)
        if fields is None:
            continue

        address = reader.address(fields, "address", place, required=True)
        name = reader.text(fields, "name", place, required=True)
        plan_value = reader.choice(
            fields, "plan", place, [plan.value for plan in Plan], required=True
        )
        role = reader.choice(fields, "role", place, ["head"])
        network = reader.address(fields, "network", place)
        demo_until = reader.instant(fields, "demo_until", place)
        plan = None if plan_value is None else Plan(plan_value)
        is_head = role == "head"

        if address is not None:
            if address in first_place:
                reader.add(
                    _at(place, "address"), f'"{address}" is already at {first_place[address]}'
                )
                continue
            first_place[address] = place
            heads[address] = (place, is_head)

        # The network rules that one portal's own fields can break.
        if is_head and plan is not None and plan is not Plan.ENTERPRISE:
            reader.add(_at(place, "plan"), 'a head must be on "enterprise"')
        if is_head and network is not None:
            reader.add(_at(place, "network"), "a head cannot be a branch of another network")
        elif network is not None and network == address:
            reader.add(_at(place, "network"), "a portal cannot be a branch of itself")
        if demo_until is not None and not (plan is Plan.FREE and network is not None):
            reader.add(
                _at(place, "demo_until"),
                'only a free branch (plan "free" with a "network") has a demo',
            )

        if address is not None and name is not None and plan is not None:
            specs.append(PortalSpec(place, address, name, plan, is_head, network, demo_until))
    return specs, heads


def _read_departments(
    reader: _Reader, value: object, portal_addresses: set[str]
) -> tuple[list[DepartmentSpec], set[tuple[str, str]]]:
    """The departments, and every (portal, id) pair the file defines."""
    specs: list[DepartmentSpec] = []
    first_place: dict[tuple[str, str], str] = {}

    for place, item in reader.items(value, "departments"):
        fields = reader.fields(item, place, DEPARTMENT_KEYS)
        if fields is None:
            continue

        portal = reader.address(fields, "portal", place, required=True)
        key = reader.text(fields, "id", place, required=True, max_length=DEPARTMENT_ID_LENGTH)
        name = reader.text(fields, "name", place, required=True)
        parent = reader.text(fields, "parent", place, max_length=DEPARTMENT_ID_LENGTH)
        head = reader.person_ref(fields, "head", place)

        if portal is not None and portal not in portal_addresses:
            reader.add(_at(place, "portal"), f'no such portal "{portal}"')
            continue
        if portal is None or key is None:
            continue
        if (portal, key) in first_place:
            reader.add(
                _at(place, "id"),
                f'"{key}" on "{portal}" is already at {first_place[portal, key]}',
            )
            continue
        first_place[portal, key] = place

        if name is not None:
            specs.append(DepartmentSpec(place, portal, key, name, parent, head))
    return specs, set(first_place)


def _read_people(
    reader: _Reader,
    value: object,
    portal_addresses: set[str],
    department_keys: set[tuple[str, str]],
) -> tuple[list[PersonSpec], dict[str, set[str]]]:
    """The people, and the portals each person's memberships name, by the person's place."""
    specs: list[PersonSpec] = []
    staff: dict[str, set[str]] = {}
    telegram_places: dict[int, str] = {}
    email_places: dict[str, str] = {}
    phone_places: dict[str, str] = {}
    name_places: dict[tuple[str, str], str] = {}

    for place, item in reader.items(value, "people"):
        fields = reader.fields(item, place, PERSON_KEYS)
        if fields is None:
            continue

        name = reader.text(fields, "name", place, required=True)
        telegram_id = reader.telegram_id(fields, "telegram_id", place)
        email = reader.email(fields, "email", place)
        phone = reader.phone(fields, "phone", place)
        username = reader.username(fields, "username", place)
        language = reader.choice(fields, "language", place, LANGUAGES)
        memberships, staff[place] = _read_memberships(
            reader, fields.get("memberships"), place, portal_addresses, department_keys
        )

        if telegram_id is not None:
            _unique(reader, telegram_places, telegram_id, _at(place, "telegram_id"), telegram_id)
        if email is not None:
            _unique(reader, email_places, email, _at(place, "email"), f'"{email}"')
        if name is None:
            continue
        spec = PersonSpec(
            place, name, telegram_id, email, phone, username, language, tuple(memberships)
        )

        # Without a Telegram id or an email, the phone or the name is what finds the person
        # again next time, so two people must not share it.
        if telegram_id is None and email is None and phone is not None:
            _unique(reader, phone_places, phone, _at(place, "phone"), f'"{phone}"')
        # A contact or a membership given but wrong has its own problem already.
        gave_contact = any(
            fields.get(key) is not None for key in ("telegram_id", "email", "phone")
        )
        if not spec.has_contact and not gave_contact:
            if not fields.get("memberships"):
                reader.add(
                    place,
                    "a person with no telegram_id, email or phone needs a membership, "
                    "or they cannot be recognised the next time the file is loaded",
                )
            elif spec.first_portal is not None:
                key = (name, spec.first_portal)
                if key in name_places:
                    reader.add(
                        place,
                        f'"{name}" first on "{spec.first_portal}" is already at '
                        f"{name_places[key]}; give one of them a telegram_id, email or phone",
                    )
                else:
                    name_places[key] = place
        specs.append(spec)
    return specs, staff


def _read_memberships(
    reader: _Reader,
    value: object,
    person_place: str,
    portal_addresses: set[str],
    department_keys: set[tuple[str, str]],
) -> tuple[list[MembershipSpec], set[str]]:
    """The memberships, and every portal they name (even a membership with problems)."""
    specs: list[MembershipSpec] = []
    first_place: dict[str, str] = {}

    for place, item in reader.items(value, _at(person_place, "memberships")):
        fields = reader.fields(item, place, MEMBERSHIP_KEYS)
        if fields is None:
            continue

        portal = reader.address(fields, "portal", place, required=True)
        role = reader.choice(fields, "role", place, [role.value for role in Role], required=True)
        position = reader.text(fields, "position", place)
        departments = reader.department_ids(fields, "department", place)

        if portal is None:
            continue
        if portal not in portal_addresses:
            reader.add(_at(place, "portal"), f'no such portal "{portal}"')
            continue
        if portal in first_place:
            reader.add(_at(place, "portal"), f'"{portal}" is already at {first_place[portal]}')
            continue
        first_place[portal] = place
        for department_place, department in departments:
            if (portal, department) not in department_keys:
                reader.add(department_place, f'no department "{department}" on "{portal}"')

        if role is not None:
            department_ids = tuple(department for _, department in departments)
            specs.append(MembershipSpec(place, portal, Role(role), position, department_ids))
    return specs, set(first_place)


def _check_networks(
    reader: _Reader, portals: Sequence[PortalSpec], heads: Mapping[str, tuple[str, bool]]
) -> None:
    """A branch's network, when the file has that portal, must be a head in the file.

    A network the file does not have is looked up in the database later.
    """
    for spec in portals:
        if spec.network is None or spec.is_head or spec.network == spec.address:
            continue
        head_place, is_head = heads.get(spec.network, ("", True))
        if not is_head:
            reader.add(
                _at(spec.place, "network"),
                f'"{spec.network}" is not a head: it has no "role": "head" at {head_place}',
            )


def _check_parents(reader: _Reader, departments: Sequence[DepartmentSpec]) -> None:
    """Every parent is a department of the same portal, and parents never go round in a circle."""
    by_key = {(spec.portal, spec.key): spec for spec in departments}
    for spec in departments:
        if spec.parent is None:
            continue
        if spec.parent == spec.key:
            reader.add(_at(spec.place, "parent"), "a department cannot be its own parent")
        elif (spec.portal, spec.parent) not in by_key:
            reader.add(
                _at(spec.place, "parent"), f'no department "{spec.parent}" on "{spec.portal}"'
            )

    # Walk up from each department; meeting the walk's own path again is a cycle. Each cycle is
    # reported once, at the department of it that comes first in the file.
    order = {key: index for index, key in enumerate(by_key)}
    done: set[tuple[str, str]] = set()
    for start in by_key:
        path: list[tuple[str, str]] = []
        on_path: set[tuple[str, str]] = set()
        current: tuple[str, str] | None = start
        while current is not None and current not in done and current not in on_path:
            path.append(current)
            on_path.add(current)
            parent = by_key[current].parent
            following = (current[0], parent) if parent is not None else None
            current = following if following in by_key and following != current else None

        if current is not None and current in on_path:
            cycle = path[path.index(current) :]
            first = min(range(len(cycle)), key=lambda index: order[cycle[index]])
            cycle = cycle[first:] + cycle[:first]
            names = " → ".join(key for _, key in [*cycle, cycle[0]])
            reader.add(
                _at(by_key[cycle[0]].place, "parent"),
                f"the parents go round in a circle: {names}",
            )
        done.update(path)


def _check_department_heads(
    reader: _Reader,
    departments: Sequence[DepartmentSpec],
    people: Sequence[PersonSpec],
    staff: Mapping[str, set[str]],
) -> None:
    """A department's head is a person in the file, on the staff of that department's portal."""
    by_ref: dict[PersonRef, PersonSpec] = {}
    for person in people:
        # A Telegram id or email given twice is a problem already; the first one counts.
        if person.telegram_id is not None:
            by_ref.setdefault(person.telegram_id, person)
        if person.email is not None:
            by_ref.setdefault(person.email, person)

    for spec in departments:
        if spec.head is None:
            continue
        head = by_ref.get(spec.head)
        if head is None:
            what = f"telegram_id {spec.head}" if isinstance(spec.head, int) else "email"
            shown = "" if isinstance(spec.head, int) else f' "{spec.head}"'
            reader.add(_at(spec.place, "head"), f"no person with {what}{shown} in the file")
        elif spec.portal not in staff[head.place]:
            reader.add(
                _at(spec.place, "head"),
                f'{head.place} ({head.name}) is not on the staff of "{spec.portal}"',
            )


def _unique(
    reader: _Reader, first_place: dict[T, str], value: T, place: str, shown: object
) -> None:
    if value in first_place:
        reader.add(place, f"{shown} is already at {first_place[value]}")
    else:
        first_place[value] = place.rsplit(".", 1)[0]


def _at(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# Importing.


async def import_network(session: AsyncSession, data: object, *, now: datetime) -> ImportSummary:
    """Check the file against its rules and the database, then apply it; never commits.

    Raises NetworkFileError, having written nothing, when anything is wrong.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)

    plan = parse_network_file(data)
    existing = await _load_existing(session, plan)
    people = _match_people(plan, existing)

    problems = _check_against_database(plan, existing, people)
    if problems:
        raise NetworkFileError(problems)

    summary = await _Apply(session, plan, existing, people, now).run()
    log.info(
        "network file imported: %d portals, %d departments, %d people in the file; changed: %s",
        len(plan.portals),
        len(plan.departments),
        len(plan.people),
        summary.changed,
    )
    return summary


@dataclass(slots=True)
class _Existing:
    """The rows the file may touch, loaded in a few statements whatever the file's size."""

    # File portals and the heads they name, by address.
    portals: dict[str, Portal]
    # Branches of those heads that the file does not list, by head id.
    unlisted_branches: dict[int, list[Portal]]
    people_by_telegram_id: dict[int, Person]
    people_by_email: dict[str, Person]
    people_by_phone: dict[str, list[Person]]
    # Memberships of the listed portals, by (person id, portal id).
    memberships: dict[tuple[int, int], Membership]
    # People with a membership in a listed portal, by id, and by (portal id, name).
    members: dict[int, Person]
    members_by_name: dict[tuple[int, str], list[Person]]
    # Departments of the listed portals, by (portal id, key).
    departments: dict[tuple[int, str], Department]
    # Department ids of each membership of the listed portals.
    membership_departments: dict[int, set[int]]


async def _load_existing(session: AsyncSession, plan: NetworkPlan) -> _Existing:
    listed_addresses = {spec.address for spec in plan.portals}
    wanted_addresses = listed_addresses | {
        spec.network for spec in plan.portals if spec.network is not None
    }
    portals = {
        portal.address: portal
        for portal in await _fetch_in(session, Portal, Portal.address, wanted_addresses)
    }

    head_ids = [portal.id for portal in portals.values() if portal.is_head]
    unlisted_branches: dict[int, list[Portal]] = defaultdict(list)
    for branch in await _fetch_in(session, Portal, Portal.head_id, head_ids):
        if branch.address not in listed_addresses:
            assert branch.head_id is not None
            unlisted_branches[branch.head_id].append(branch)

    listed_ids = [portals[address].id for address in listed_addresses if address in portals]
    memberships: dict[tuple[int, int], Membership] = {}
    members: dict[int, Person] = {}
    members_by_name: dict[tuple[int, str], list[Person]] = defaultdict(list)
    for chunk in _chunks(sorted(listed_ids)):
        result = await session.execute(
            select(Membership, Person)
            .join(Person, Membership.person_id == Person.id)
            .where(Membership.portal_id.in_(chunk))
            .order_by(Membership.id)
        )
        for membership, person in result:
            memberships[membership.person_id, membership.portal_id] = membership
            members[person.id] = person
            members_by_name[membership.portal_id, person.name].append(person)

    telegram_ids = {spec.telegram_id for spec in plan.people if spec.telegram_id is not None}
    emails = {spec.email for spec in plan.people if spec.email is not None}
    phones = {spec.phone for spec in plan.people if spec.phone is not None}
    by_telegram = await _fetch_in(session, Person, Person.telegram_id, telegram_ids)
    by_email = await _fetch_in(session, Person, Person.email, emails)
    by_phone = await _fetch_in(session, Person, Person.phone, phones)
    people_by_phone: dict[str, list[Person]] = defaultdict(list)
    for person in sorted(set(by_phone), key=lambda person: person.id):
        assert person.phone is not None
        people_by_phone[person.phone].append(person)

    departments = {
        (department.portal_id, department.key): department
        for department in await _fetch_in(session, Department, Department.portal_id, listed_ids)
    }

    membership_department_ids: dict[int, set[int]] = defaultdict(set)
    for chunk in _chunks(sorted(listed_ids)):
        rows = await session.execute(
            select(membership_departments.c.membership_id, membership_departments.c.department_id)
            .join(Membership, Membership.id == membership_departments.c.membership_id)
            .where(Membership.portal_id.in_(chunk))
        )
        for membership_id, department_id in rows:
            membership_department_ids[membership_id].add(department_id)

    return _Existing(
        portals=portals,
        unlisted_branches=unlisted_branches,
        people_by_telegram_id={
            person.telegram_id: person for person in by_telegram if person.telegram_id
        },
        people_by_email={person.email: person for person in by_email if person.email},
        people_by_phone=people_by_phone,
        memberships=memberships,
        members=members,
        members_by_name=members_by_name,
        departments=departments,
        membership_departments=membership_department_ids,
    )


async def _fetch_in(
    session: AsyncSession, entity: type[T], column: Any, values: Iterable[object]
) -> list[T]:
    """The rows whose column is one of the values, in as few statements as the limits allow."""
    found: list[T] = []
    for chunk in _chunks(sorted(values, key=str)):
        result = await session.execute(select(entity).where(column.in_(chunk)))
        found.extend(result.scalars().all())
    return found


def _chunks(values: Sequence[T]) -> list[Sequence[T]]:
    return [values[start : start + LOOKUP_CHUNK] for start in range(0, len(values), LOOKUP_CHUNK)]


def _match_people(plan: NetworkPlan, existing: _Existing) -> list[Person | None]:
    """The stored person each person of the file is, or None for someone new.

    Identity goes by Telegram id, then email, then phone, then name within the first portal.
    A weaker key finds a stored person only when the stronger keys the file gives are not
    already set to something else there: it adds an identifier, never changes one.
    """
    matches: list[Person | None] = [None] * len(plan.people)
    claimed: set[int] = set()

    def claim(index: int, person: Person | None) -> None:
        if person is not None and person.id not in claimed:
            matches[index] = person
            claimed.add(person.id)

    for index, spec in enumerate(plan.people):
        if spec.telegram_id is not None:
            claim(index, existing.people_by_telegram_id.get(spec.telegram_id))

    for index, spec in enumerate(plan.people):
        if matches[index] is None and spec.email is not None:
            person = existing.people_by_email.get(spec.email)
            if person is not None and (spec.telegram_id is None or person.telegram_id is None):
                claim(index, person)

    for index, spec in enumerate(plan.people):
        if matches[index] is not None or spec.phone is None:
            continue
        for person in existing.people_by_phone.get(spec.phone, []):
            if person.id in claimed:
                continue
            if spec.telegram_id is not None and person.telegram_id is not None:
                continue
            if spec.email is not None and person.email is not None:
                continue
            claim(index, person)
            break

    # A link made in the bot sets telegram_id on someone the file knows only by name; they are
    # still the same person.
    for index, spec in enumerate(plan.people):
        if matches[index] is not None or spec.has_contact or spec.first_portal is None:
            continue
        portal = existing.portals.get(spec.first_portal)
        if portal is None:
            continue
        for person in existing.members_by_name.get((portal.id, spec.name), []):
            if person.id not in claimed and person.email is None and person.phone is None:
                claim(index, person)
                break
    return matches


def _check_against_database(
    plan: NetworkPlan, existing: _Existing, people: Sequence[Person | None]
) -> list[FileProblem]:
    """The rules that depend on what is stored already."""
    problems: list[FileProblem] = []
    listed = {spec.address: spec for spec in plan.portals}

    for spec in plan.portals:
        current = existing.portals.get(spec.address)

        if spec.network is not None and spec.network not in listed:
            head = existing.portals.get(spec.network)
            if head is None:
                problems.append(
                    FileProblem(
                        _at(spec.place, "network"), f'no such head portal "{spec.network}"'
                    )
                )
                continue
            if not head.is_head:
                problems.append(
                    FileProblem(
                        _at(spec.place, "network"),
                        f'"{spec.network}" is not the head of a network',
                    )
                )
                continue

        if spec.network is not None and spec.plan is Plan.FREE and current is not None:
            head = existing.portals.get(spec.network)
            stays_connected = head is not None and current.head_id == head.id
            if current.ever_in_network and not stays_connected:
                problems.append(
                    FileProblem(
                        _at(spec.place, "network"),
                        f'"{spec.address}" is free and was in a network before: it must move '
                        "to a commercial plan before it is connected again",
                    )
                )

        if current is not None and current.is_head and not spec.is_head:
            branches = existing.unlisted_branches.get(current.id, [])
            if branches:
                names = ", ".join(sorted(branch.address for branch in branches))
                problems.append(
                    FileProblem(
                        _at(spec.place, "role"),
                        f'"{spec.address}" is the head of branches the file does not list '
                        f"({names}), so it must stay a head",
                    )
                )

    # An email may pass from one stored person to another only when the file takes it away
    # from the first one too.
    matched_ids = {person.id for person in people if person is not None}
    for person_spec, person in zip(plan.people, people, strict=True):
        if person_spec.email is None:
            continue
        holder = existing.people_by_email.get(person_spec.email)
        if holder is not None and holder is not person and holder.id not in matched_ids:
            problems.append(
                FileProblem(
                    _at(person_spec.place, "email"),
                    f'"{person_spec.email}" belongs to another person, who is not in the file',
                )
            )
    return problems


class _Apply:
    """Writes a checked file: creates and updates what it names, removes what it dropped."""

    def __init__(
        self,
        session: AsyncSession,
        plan: NetworkPlan,
        existing: _Existing,
        people: Sequence[Person | None],
        now: datetime,
    ) -> None:
        self.session = session
        self.plan = plan
        self.existing = existing
        self.people: list[Person | None] = list(people)
        self.now = now
        self.portals: dict[str, Portal] = dict(existing.portals)
        self.departments: dict[tuple[int, str], Department] = {}
        self.people_by_ref: dict[PersonRef, Person] = {}
        self.portal_tally = _Counter()
        self.department_tally = _Counter()
        self.people_tally = _Counter()
        self.membership_tally = _Counter()

    async def run(self) -> ImportSummary:
        await self._portals()
        await self._people()
        await self._departments()
        await self._memberships()
        await self._removed_departments()
        return ImportSummary(
            portals=self.portal_tally.frozen(),
            departments=self.department_tally.frozen(),
            people=self.people_tally.frozen(),
            memberships=self.membership_tally.frozen(),
        )

    async def _portals(self) -> None:
        # Heads first, so that a new head has its id before its new branches point at it.
        specs = sorted(self.plan.portals, key=lambda spec: spec.network is not None)
        flushed_heads = False
        for spec in specs:
            if spec.network is not None and not flushed_heads:
                await self.session.flush()
                flushed_heads = True

            portal = self.portals.get(spec.address)
            created = portal is None
            if portal is None:
                portal = Portal(
                    address=spec.address,
                    name=spec.name,
                    plan=spec.plan.value,
                    is_head=False,
                    ever_in_network=False,
                    created_at=self.now,
                )
                self.session.add(portal)
                self.portals[spec.address] = portal
            changed = _assign(portal, self._portal_state(spec, None if created else portal))
            self.portal_tally.count(created=created, changed=changed)
        await self.session.flush()

    def _portal_state(self, spec: PortalSpec, current: Portal | None) -> dict[str, object]:
        """The stored fields the spec asks for, by the connect and plan rules of the bot."""
        state: dict[str, object] = {
            "name": spec.name,
            "plan": spec.plan.value,
            "is_head": spec.is_head,
        }
        if spec.network is None:
            # A standalone or a head; a former branch leaves its network and its demo behind.
            return state | {
                "head_id": None,
                "connected_at": None,
                "demo_until": None,
                "incompatible_until": None,
            }

        head_id = self.portals[spec.network].id
        if current is None or current.head_id != head_id:
            demo_until = spec.demo_until
            if demo_until is None and spec.plan is Plan.FREE:
                demo_until = self.now + DEMO_LENGTH
            return state | {
                "head_id": head_id,
                "connected_at": self.now,
                "demo_until": demo_until,
                "ever_in_network": True,
                "incompatible_until": None,
            }

        # Staying in the same network: the plan rules decide what a plan change does.
        change = check_plan_change(portal_facts(current), spec.plan, False, self.now)
        assert isinstance(change, PlanChange), "a branch's plan change is never refused"
        demo_until = None if change.ends_demo else current.demo_until
        incompatible_until = current.incompatible_until
        if change.becomes_incompatible_until is not None:
            incompatible_until = change.becomes_incompatible_until
        elif change.becomes_compatible:
            incompatible_until = None
        if spec.demo_until is not None and spec.demo_until != current.demo_until:
            # A demo moved by hand into the future makes the branch compatible again.
            demo_until = spec.demo_until
            if demo_until > self.now:
                incompatible_until = None
        return state | {"demo_until": demo_until, "incompatible_until": incompatible_until}

    async def _people(self) -> None:
        wanted = [
            self._person_state(spec, person)
            for spec, person in zip(self.plan.people, self.people, strict=True)
        ]
        changed = [
            person is not None and _differs(person, state)
            for person, state in zip(self.people, wanted, strict=True)
        ]

        # An email may move between two stored people in one file; clearing the ones that
        # change first keeps the unique email column satisfied whatever the order of writes.
        clearing = False
        for person, state in zip(self.people, wanted, strict=True):
            if person is not None and person.email is not None and person.email != state["email"]:
                person.email = None
                clearing = True
        if clearing:
            await self.session.flush()

        new_rows: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for index, state in enumerate(wanted):
            person = self.people[index]
            if person is None:
                new_rows[tuple(state.values())].append(index)
            else:
                _assign(person, state)
            self.people_tally.count(created=person is None, changed=changed[index])
        await self.session.flush()

        # New people come back in no particular order, so each is found by what was written;
        # two new people written alike are interchangeable until their memberships are added.
        rows = [wanted[index] | {"created_at": self.now} for index in _flat(new_rows.values())]
        for person in await _insert(self.session, Person, rows):
            written = tuple(getattr(person, field) for field in wanted[0])
            self.people[new_rows[written].pop()] = person

        for spec, stored in zip(self.plan.people, self.people, strict=True):
            assert stored is not None
            if spec.telegram_id is not None:
                self.people_by_ref[spec.telegram_id] = stored
            if spec.email is not None:
                self.people_by_ref[spec.email] = stored

    @staticmethod
    def _person_state(spec: PersonSpec, person: Person | None) -> dict[str, object]:
        def kept(value: object, field: str) -> object:
            # What Telegram or the bot may have set survives a file that leaves it out.
            return getattr(person, field) if value is None and person is not None else value

        return {
            "name": spec.name,
            "name_folded": spec.name.casefold(),
            "email": spec.email,
            "phone": spec.phone,
            "telegram_id": kept(spec.telegram_id, "telegram_id"),
            "username": kept(spec.username, "username"),
            "language": kept(spec.language, "language"),
        }

    async def _departments(self) -> None:
        changed: list[bool] = []
        new_rows: list[dict[str, object]] = []
        for spec in self.plan.departments:
            portal_id = self.portals[spec.portal].id
            head = None if spec.head is None else self.people_by_ref[spec.head]
            state: dict[str, object] = {
                "name": spec.name,
                "head_person_id": None if head is None else head.id,
            }
            department = self.existing.departments.get((portal_id, spec.key))
            if department is None:
                new_rows.append(state | {"portal_id": portal_id, "key": spec.key})
                changed.append(True)
            else:
                changed.append(_assign(department, state))
                self.departments[portal_id, spec.key] = department
        for department in await _insert(self.session, Department, new_rows):
            self.departments[department.portal_id, department.key] = department

        # Parents once every department has its id, since a new parent may follow its child.
        for index, spec in enumerate(self.plan.departments):
            portal_id = self.portals[spec.portal].id
            department = self.departments[portal_id, spec.key]
            parent = None if spec.parent is None else self.departments[portal_id, spec.parent]
            moved = _assign(department, {"parent_id": None if parent is None else parent.id})
            created = (portal_id, spec.key) not in self.existing.departments
            self.department_tally.count(created=created, changed=changed[index] or moved)
        await self.session.flush()

    async def _memberships(self) -> None:
        kept: set[tuple[int, int]] = set()
        links: list[tuple[tuple[int, int], set[int]]] = []
        new_rows: list[dict[str, object]] = []
        for spec, person in zip(self.plan.people, self.people, strict=True):
            assert person is not None
            for membership_spec in spec.memberships:
                portal = self.portals[membership_spec.portal]
                key = (person.id, portal.id)
                kept.add(key)
                department_ids = {
                    self.departments[portal.id, department].id
                    for department in membership_spec.departments
                }
                state = {"role": membership_spec.role.value, "position": membership_spec.position}

                membership = self.existing.memberships.get(key)
                if membership is None:
                    new_rows.append(state | {"person_id": person.id, "portal_id": portal.id})
                    self.membership_tally.count(created=True, changed=True)
                else:
                    stored = self.existing.membership_departments.get(membership.id, set())
                    changed = _assign(membership, state) or department_ids != stored
                    self.membership_tally.count(created=False, changed=changed)
                links.append((key, department_ids))
        await self.session.flush()

        membership_ids = {
            key: membership.id for key, membership in self.existing.memberships.items()
        }
        for membership in await _insert(self.session, Membership, new_rows):
            membership_ids[membership.person_id, membership.portal_id] = membership.id

        added: list[dict[str, int]] = []
        dropped: list[dict[str, int]] = []
        for key, department_ids in links:
            membership_id = membership_ids[key]
            stored = self.existing.membership_departments.get(membership_id, set())
            added += [
                {"membership_id": membership_id, "department_id": department_id}
                for department_id in sorted(department_ids - stored)
            ]
            dropped += [
                {"gone_membership": membership_id, "gone_department": department_id}
                for department_id in sorted(stored - department_ids)
            ]
        if dropped:
            await self.session.execute(
                delete(membership_departments).where(
                    membership_departments.c.membership_id == bindparam("gone_membership"),
                    membership_departments.c.department_id == bindparam("gone_department"),
                ),
                dropped,
            )
        if added:
            await self.session.execute(insert(membership_departments), added)

        removed = [
            membership for key, membership in self.existing.memberships.items() if key not in kept
        ]
        await self._remove_memberships(removed)

    async def _remove_memberships(self, removed: Sequence[Membership]) -> None:
        if not removed:
            return
        removed_ids = [membership.id for membership in removed]
        for chunk in _chunks(removed_ids):
            await self.session.execute(
                delete(membership_departments).where(
                    membership_departments.c.membership_id.in_(chunk)
                )
            )
            await self.session.execute(delete(Membership).where(Membership.id.in_(chunk)))
        self.membership_tally.removed += len(removed)

        # A portal whose membership ended stops being the person's current one.
        for membership in removed:
            person = self.existing.members[membership.person_id]
            if person.current_portal_id == membership.portal_id:
                person.current_portal_id = None
        await self.session.flush()

    async def _removed_departments(self) -> None:
        removed_ids = [
            department.id
            for key, department in self.existing.departments.items()
            if key not in self.departments
        ]
        # Their children are either removed too or moved under a department the file names, and
        # their members' links go first; invites to them lose the department through the key.
        for chunk in _chunks(removed_ids):
            await self.session.execute(
                delete(membership_departments).where(
                    membership_departments.c.department_id.in_(chunk)
                )
            )
            await self.session.execute(delete(Department).where(Department.id.in_(chunk)))
        self.department_tally.removed += len(removed_ids)


async def _insert(
    session: AsyncSession, entity: type[Row], rows: Sequence[Mapping[str, object]]
) -> list[Row]:
    """Insert many rows in a few statements; the new rows come back in no particular order.

    Asking for them in the order given would make SQLite insert them one statement each, and
    so would leaving out the columns that are None, since rows are batched by their columns.
    """
    if not rows:
        return []
    result = await session.execute(
        insert(entity).returning(entity), list(rows), execution_options={"render_nulls": True}
    )
    return list(result.scalars().all())


def _flat(groups: Iterable[Sequence[T]]) -> list[T]:
    return [item for group in groups for item in group]


def _differs(row: object, state: Mapping[str, object]) -> bool:
    return any(getattr(row, name) != value for name, value in state.items())


def _assign(row: object, state: Mapping[str, object]) -> bool:
    """Set the fields that differ, and tell whether any did.

    Equal values are not assigned at all, so that a row the file does not change is never
    written.
    """
    changed = False
    for name, value in state.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
