"""The network file import: validation, idempotence, edits, identity and what it leaves alone."""

import copy
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domain.addresses import canonical_address
from domain.rules import DEMO_LENGTH, GRACE_LENGTH
from services.importer import (
    FileProblem,
    ImportSummary,
    NetworkFileError,
    Tally,
    import_network,
    load_file,
    parse_network_file,
)
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import (
    AuditEntry,
    Department,
    Invite,
    Membership,
    Notice,
    Person,
    Portal,
    membership_departments,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "network.json"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SPECIAL_NAME = 'Max "<b>Bold</b>" O\'Brien & Sons 🚀'
WRITES = ("INSERT", "UPDATE", "DELETE")


class Database:
    """A migrated SQLite file, its sessions, and a count of the statements run on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = create_session_factory(engine)
        self.statements: Counter[str] = Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        statement: str = args[2]
        self.statements[statement.split(None, 1)[0].upper()] += 1

    @property
    def writes(self) -> int:
        return sum(self.statements[kind] for kind in WRITES)

    async def load(self, data: object, *, now: datetime = NOW) -> ImportSummary:
        async with self.sessions() as session:
            summary = await import_network(session, data, now=now)
            await session.commit()
        return summary

    async def refused(self, data: object, *, now: datetime = NOW) -> list[str]:
        """The problems of a file that must be rejected, with nothing left written."""
        self.statements.clear()
        async with self.sessions() as session:
            with pytest.raises(NetworkFileError) as caught:
                await import_network(session, data, now=now)
            await session.rollback()
        assert self.writes == 0
        return [str(problem) for problem in caught.value.problems]

    async def row_counts(self) -> dict[str, int]:
        tables = [Portal, Person, Membership, Department, Invite, Notice, AuditEntry]
        async with self.sessions() as session:
            counts = {
                table.__tablename__: await session.scalar(select(func.count()).select_from(table))
                or 0
                for table in tables
            }
            links = await session.scalar(select(func.count()).select_from(membership_departments))
        return counts | {"membership_departments": links or 0}

    async def portal(self, address: str) -> Portal:
        async with self.sessions() as session:
            found = await session.execute(select(Portal).where(Portal.address == address))
            return found.scalar_one()

    async def person(self, name: str) -> Person:
        async with self.sessions() as session:
            found = await session.execute(select(Person).where(Person.name == name))
            return found.scalar_one()

    async def memberships_of(self, name: str) -> dict[str, tuple[str, str | None, list[str]]]:
        """A person's memberships: portal address -> (role, position, department keys)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Portal.address, Membership.role, Membership.position, Membership.id)
                .join(Membership, Membership.portal_id == Portal.id)
                .join(Person, Person.id == Membership.person_id)
                .where(Person.name == name)
            )
            result: dict[str, tuple[str, str | None, list[str]]] = {}
            for address, role, position, membership_id in rows:
                keys = await session.scalars(
                    select(Department.key)
                    .join(
                        membership_departments,
                        membership_departments.c.department_id == Department.id,
                    )
                    .where(membership_departments.c.membership_id == membership_id)
                    .order_by(Department.key)
                )
                result[address] = (role, position, list(keys))
        return result

    async def departments_of(self, address: str) -> dict[str, tuple[str, str | None]]:
        """A portal's departments: key -> (name, parent key)."""
        async with self.sessions() as session:
            portal = await session.scalar(select(Portal.id).where(Portal.address == address))
            departments = (
                await session.scalars(select(Department).where(Department.portal_id == portal))
            ).all()
        keys = {department.id: department.key for department in departments}
        return {
            department.key: (
                department.name,
                None if department.parent_id is None else keys[department.parent_id],
            )
            for department in departments
        }


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    engine = create_engine(database_url)
    await upgrade(engine)
    yield Database(engine)
    await engine.dispose()


def example() -> dict[str, Any]:
    data = load_file(EXAMPLE)
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def person_entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(item for item in data["people"] if item["name"] == name)
    return entry


def portal_entry(data: dict[str, Any], address: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(
        item for item in data["portals"] if canonical_address(item["address"]) == address
    )
    return entry


def problems_of(data: object) -> list[str]:
    with pytest.raises(NetworkFileError) as caught:
        parse_network_file(data)
    return [str(problem) for problem in caught.value.problems]


# The example file.


async def test_example_file_imports(db: Database) -> None:
    summary = await db.load(example())

    assert summary == ImportSummary(
        portals=Tally(created=5),
        departments=Tally(created=9),
        people=Tally(created=13),
        memberships=Tally(created=20),
    )
    assert summary.lines()[0] == "portals:      5 created, 0 updated, 0 removed, 0 unchanged"

    head = await db.portal("acme.bitrix24.ru")
    spb = await db.portal("spb.acme.ru")
    kzn = await db.portal("kzn.acme.ru")
    nsk = await db.portal("nsk.acme.ru")
    assert (head.is_head, head.plan, head.head_id) == (True, "enterprise", None)
    assert (spb.head_id, spb.connected_at, spb.ever_in_network, spb.demo_until) == (
        head.id,
        NOW,
        True,
        None,
    )
    assert (kzn.plan, kzn.head_id, kzn.demo_until) == ("free", head.id, NOW + DEMO_LENGTH)
    assert (nsk.is_head, nsk.head_id, nsk.ever_in_network, nsk.connected_at) == (
        False,
        None,
        False,
        None,
    )

    special = await db.person(SPECIAL_NAME)
    assert special.name_folded == SPECIAL_NAME.casefold()
    assert special.telegram_id == 1007
    vera = await db.person("Vera Sokolova")
    assert (vera.email, vera.telegram_id) == ("vera@acme.ru", None)
    boris = await db.person("Boris Ivanov")
    assert boris.phone == "+79215550102"
    anna = await db.person("Anna Petrova")
    assert (anna.username, anna.language, anna.created_at) == ("anna_p", "ru", NOW)

    assert await db.departments_of("spb.acme.ru") == {
        "sales": ("Sales", None),
        "b2b": ("B2B sales", "sales"),
        "b2b-support": ("Отдел сопровождения корпоративных продаж", "b2b"),
        "retail": ("Розница", "sales"),
    }
    assert await db.memberships_of("Vera Sokolova") == {
        "spb.acme.ru": ("employee", "B2B lead", ["b2b", "b2b-support"])
    }
    assert await db.memberships_of("John Carter") == {
        "acme.bitrix24.ru": ("admin", "CTO", ["it"]),
        "kzn.acme.ru": ("admin", None, []),
        "ekb.acme.ru": ("admin", None, []),
    }

    async with db.sessions() as session:
        b2b_head = await session.scalar(
            select(Person.name)
            .join(Department, Department.head_person_id == Person.id)
            .where(Department.key == "b2b")
        )
    assert b2b_head == "Vera Sokolova"


async def test_second_import_writes_nothing(db: Database) -> None:
    await db.load(example())

    db.statements.clear()
    summary = await db.load(example(), now=NOW + timedelta(days=3))

    assert db.statements["SELECT"] > 0
    assert db.writes == 0, db.statements
    assert not summary.changed
    assert summary == ImportSummary(
        portals=Tally(unchanged=5),
        departments=Tally(unchanged=9),
        people=Tally(unchanged=13),
        memberships=Tally(unchanged=20),
    )
    assert summary.lines()[-1] == "Nothing changed."


async def test_edits_are_applied_and_nothing_else(db: Database) -> None:
    await db.load(example())
    data = example()

    portal_entry(data, "spb.acme.ru")["name"] = "Acme Санкт-Петербург"
    moved = next(item for item in data["departments"] if item["id"] == "b2b-support")
    moved["parent"] = "retail"
    data["departments"] = [item for item in data["departments"] if item["id"] != "it-support"]
    person_entry(data, "Sophie Martin")["memberships"][0]["department"] = "it"
    person_entry(data, "Boris Ivanov")["memberships"][0]["role"] = "admin"
    ivan = person_entry(data, "Иван Морозов")
    ivan["memberships"] = [{"portal": "nsk.acme.ru", "role": "employee"}]

    db.statements.clear()
    summary = await db.load(data)

    assert summary == ImportSummary(
        portals=Tally(updated=1, unchanged=4),
        departments=Tally(updated=1, removed=1, unchanged=7),
        people=Tally(unchanged=13),
        memberships=Tally(created=1, updated=2, removed=1, unchanged=17),
    )
    assert (await db.portal("spb.acme.ru")).name == "Acme Санкт-Петербург"
    assert (await db.departments_of("spb.acme.ru"))["b2b-support"][1] == "retail"
    assert "it-support" not in await db.departments_of("acme.bitrix24.ru")
    assert await db.memberships_of("Sophie Martin") == {
        "acme.bitrix24.ru": ("employee", None, ["it"]),
        "spb.acme.ru": ("employee", None, ["b2b-support"]),
    }
    assert (await db.memberships_of("Boris Ivanov"))["spb.acme.ru"][0] == "admin"
    assert await db.memberships_of("Иван Морозов") == {"nsk.acme.ru": ("employee", None, [])}

    # The same edited file again is a no-op.
    db.statements.clear()
    again = await db.load(data)
    assert not again.changed
    assert db.writes == 0


async def test_dropped_department_takes_its_links_and_children_move(db: Database) -> None:
    await db.load(example())
    spb = await db.portal("spb.acme.ru")
    async with db.sessions() as session:
        b2b = await session.scalar(select(Department.id).where(Department.key == "b2b"))
        session.add(
            Invite(
                token="b2b-invite",
                portal_id=spb.id,
                role="employee",
                department_id=b2b,
                created_at=NOW,
                expires_at=NOW + timedelta(days=7),
            )
        )
        await session.commit()
    data = example()
    data["departments"] = [item for item in data["departments"] if item["id"] != "b2b"]
    for item in data["departments"]:
        if item.get("parent") == "b2b":
            item["parent"] = "sales"
    person_entry(data, "Vera Sokolova")["memberships"][0]["department"] = "b2b-support"

    summary = await db.load(data)

    assert summary.departments == Tally(updated=1, removed=1, unchanged=7)
    assert (await db.departments_of("spb.acme.ru"))["b2b-support"] == (
        "Отдел сопровождения корпоративных продаж",
        "sales",
    )
    assert await db.memberships_of("Vera Sokolova") == {
        "spb.acme.ru": ("employee", "B2B lead", ["b2b-support"])
    }
    # The invite stays, without the department that is gone.
    async with db.sessions() as session:
        invite = await session.scalar(select(Invite).where(Invite.token == "b2b-invite"))
    assert invite is not None
    assert (invite.portal_id, invite.department_id) == (spb.id, None)


async def test_portals_not_in_the_file_are_left_alone(db: Database) -> None:
    await db.load(example())
    data = example()
    data["portals"] = [item for item in data["portals"] if "nsk" not in item["address"]]
    for person in data["people"]:
        person["memberships"] = [
            membership
            for membership in person["memberships"]
            if membership["portal"] != "nsk.acme.ru"
        ]
    data["people"] = [person for person in data["people"] if person["name"] != "Ольга Новикова"]

    summary = await db.load(data)

    assert summary.memberships.removed == 0
    assert await db.memberships_of("Emily Clarke") == {
        "nsk.acme.ru": ("admin", "Branch manager", [])
    }
    assert "nsk.acme.ru" in await db.memberships_of(SPECIAL_NAME)


# What the bot owns.


async def test_bot_side_state_is_untouched(db: Database) -> None:
    await db.load(example())
    spb = await db.portal("spb.acme.ru")
    head = await db.portal("acme.bitrix24.ru")
    started = NOW + timedelta(hours=1)

    async with db.sessions() as session:
        people = {person.name: person for person in (await session.scalars(select(Person))).all()}
        anna, boris, ivan = people["Anna Petrova"], people["Boris Ivanov"], people["Иван Морозов"]
        anna.telegram_language = "en-GB"
        anna.started_at = started
        anna.current_portal_id = head.id
        boris.language = "en"
        boris.current_portal_id = spb.id
        boris.blocked_at = started
        ivan.current_portal_id = spb.id
        people["Vera Sokolova"].telegram_id = 5555
        session.add(
            Invite(
                token="t" * 32,
                portal_id=spb.id,
                created_by_id=anna.id,
                role="employee",
                created_at=NOW,
                expires_at=NOW + timedelta(days=7),
            )
        )
        session.add(
            Notice(
                person_id=anna.id,
                kind="connected",
                params="{}",
                dedupe_key="connected:1",
                created_at=NOW,
                not_before=NOW,
            )
        )
        session.add(AuditEntry(at=NOW, actor="bot", action="connect", details="", outcome="ok"))
        await session.commit()

    data = example()
    portal_entry(data, "spb.acme.ru")["name"] = "Acme Piter"
    person_entry(data, "Иван Морозов")["memberships"] = [
        {"portal": "nsk.acme.ru", "role": "employee"}
    ]
    before = await db.row_counts()
    summary = await db.load(data)

    assert summary.portals.updated == 1
    assert summary.memberships.removed == 1
    after = await db.row_counts()
    for table in ("invites", "notices", "audit_log"):
        assert after[table] == before[table] == 1
    anna = await db.person("Anna Petrova")
    assert (anna.telegram_language, anna.started_at, anna.current_portal_id) == (
        "en-GB",
        started,
        head.id,
    )
    boris = await db.person("Boris Ivanov")
    assert (boris.language, boris.current_portal_id, boris.blocked_at) == ("en", spb.id, started)
    # The link made in the bot stays: the file names Vera by email only.
    assert (await db.person("Vera Sokolova")).telegram_id == 5555
    # Ivan's spb membership ended, so spb is no longer his current portal.
    assert (await db.person("Иван Морозов")).current_portal_id is None


async def test_language_from_the_file_wins_when_given(db: Database) -> None:
    await db.load(example())
    async with db.sessions() as session:
        anna = await session.scalar(select(Person).where(Person.telegram_id == 1001))
        assert anna is not None
        anna.language = "en"
        await session.commit()

    summary = await db.load(example())

    assert summary.people == Tally(updated=1, unchanged=12)
    assert (await db.person("Anna Petrova")).language == "ru"


# Identity across imports.


async def test_people_are_recognised_by_their_keys(db: Database) -> None:
    await db.load(example())
    vera_id = (await db.person("Vera Sokolova")).id
    olga_id = (await db.person("Ольга Новикова")).id
    petr_id = (await db.person("Пётр Васильев")).id

    data = example()
    vera = person_entry(data, "Vera Sokolova")
    vera["telegram_id"] = 1003
    vera["name"] = "Vera Sokolova-Orlova"
    petr = person_entry(data, "Пётр Васильев")
    petr["email"] = "petr@acme.ru"
    summary = await db.load(data)

    assert summary.people == Tally(updated=2, unchanged=11)
    renamed = await db.person("Vera Sokolova-Orlova")
    assert (renamed.id, renamed.telegram_id, renamed.name_folded) == (
        vera_id,
        1003,
        "vera sokolova-orlova",
    )
    assert (await db.person("Пётр Васильев")).id == petr_id
    assert (await db.person("Ольга Новикова")).id == olga_id


async def test_a_person_known_by_name_stays_the_same_after_linking(db: Database) -> None:
    await db.load(example())
    async with db.sessions() as session:
        olga = await session.scalar(select(Person).where(Person.name == "Ольга Новикова"))
        assert olga is not None
        olga.telegram_id = 7777
        olga_id = olga.id
        await session.commit()

    db.statements.clear()
    summary = await db.load(example())

    assert not summary.changed
    assert db.writes == 0
    olga = await db.person("Ольга Новикова")
    assert (olga.id, olga.telegram_id) == (olga_id, 7777)


async def test_emails_can_change_hands_in_one_file(db: Database) -> None:
    await db.load(example())
    data = example()
    person_entry(data, "John Carter")["email"] = "m.lebedeva@acme.ru"
    person_entry(data, "Мария Лебедева")["email"] = "john.carter@acme.com"

    summary = await db.load(data)

    assert summary.people == Tally(updated=2, unchanged=11)
    assert (await db.person("John Carter")).email == "m.lebedeva@acme.ru"
    assert (await db.person("Мария Лебедева")).email == "john.carter@acme.com"


async def test_an_email_of_someone_outside_the_file_is_refused(db: Database) -> None:
    await db.load(example())
    data = example()
    data["people"] = [item for item in data["people"] if item["name"] != "Мария Лебедева"]
    for item in data["departments"]:
        if item.get("head") == 1011:
            del item["head"]
    person_entry(data, "John Carter")["email"] = "M.Lebedeva@acme.ru"

    assert await db.refused(data) == [
        'people[3].email: "m.lebedeva@acme.ru" belongs to another person, who is not in the file'
    ]


# Portals, networks and demos.


async def test_demo_defaults_and_kept_dates(db: Database) -> None:
    await db.load(example())
    kzn = await db.portal("kzn.acme.ru")
    assert (kzn.demo_until, kzn.connected_at) == (NOW + DEMO_LENGTH, NOW)

    later = NOW + timedelta(days=3)
    summary = await db.load(example(), now=later)
    kzn = await db.portal("kzn.acme.ru")
    assert not summary.changed
    assert (kzn.demo_until, kzn.connected_at) == (NOW + DEMO_LENGTH, NOW)

    data = example()
    portal_entry(data, "kzn.acme.ru")["demo_until"] = "2027-01-15T12:00:00+03:00"
    await db.load(data, now=later)
    kzn = await db.portal("kzn.acme.ru")
    assert kzn.demo_until == datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
    assert kzn.demo_until.utcoffset() == timedelta(0)


async def test_a_new_free_branch_with_a_date_gets_that_date(db: Database) -> None:
    data = example()
    portal_entry(data, "kzn.acme.ru")["demo_until"] = "2027-02-01T00:00:00Z"

    await db.load(data)

    assert (await db.portal("kzn.acme.ru")).demo_until == datetime(2027, 2, 1, tzinfo=UTC)


async def test_a_branch_moving_down_to_free_becomes_incompatible(db: Database) -> None:
    await db.load(example())
    data = example()
    portal_entry(data, "ekb.acme.ru")["plan"] = "free"
    later = NOW + timedelta(days=1)

    await db.load(data, now=later)

    ekb = await db.portal("ekb.acme.ru")
    assert (ekb.plan, ekb.connected_at, ekb.demo_until) == ("free", NOW, None)
    assert ekb.incompatible_until == later + GRACE_LENGTH

    # Back to a commercial plan: compatible again.
    await db.load(example(), now=later)
    assert (await db.portal("ekb.acme.ru")).incompatible_until is None


async def test_free_portal_that_was_in_a_network_cannot_be_connected_again(
    db: Database,
) -> None:
    await db.load(example())
    standalone = example()
    del portal_entry(standalone, "kzn.acme.ru")["network"]
    await db.load(standalone)
    kzn = await db.portal("kzn.acme.ru")
    assert (kzn.head_id, kzn.demo_until, kzn.connected_at, kzn.ever_in_network) == (
        None,
        None,
        None,
        True,
    )

    assert await db.refused(example()) == [
        'portals[3].network: "kzn.acme.ru" is free and was in a network before: it must move '
        "to a commercial plan before it is connected again"
    ]

    upgraded = example()
    portal_entry(upgraded, "kzn.acme.ru")["plan"] = "basic"
    later = NOW + timedelta(days=2)
    await db.load(upgraded, now=later)
    kzn = await db.portal("kzn.acme.ru")
    assert (kzn.plan, kzn.connected_at, kzn.demo_until) == ("basic", later, None)


async def test_network_rules_against_the_database(db: Database) -> None:
    await db.load(example())

    # A branch may join a head the file does not list.
    omsk = {
        "portals": [
            {
                "address": "omsk.acme.ru",
                "name": "Acme Omsk",
                "plan": "basic",
                "network": "acme.bitrix24.ru",
            }
        ]
    }
    summary = await db.load(omsk)
    assert summary.portals == Tally(created=1)
    head = await db.portal("acme.bitrix24.ru")
    assert (await db.portal("omsk.acme.ru")).head_id == head.id

    wrong = {
        "portals": [
            {"address": "a.acme.ru", "name": "A", "plan": "basic", "network": "nowhere.ru"},
            {"address": "b.acme.ru", "name": "B", "plan": "basic", "network": "nsk.acme.ru"},
            {"address": "acme.bitrix24.ru", "name": "Acme HQ", "plan": "enterprise"},
        ]
    }
    assert await db.refused(wrong) == [
        'portals[0].network: no such head portal "nowhere.ru"',
        'portals[1].network: "nsk.acme.ru" is not the head of a network',
        'portals[2].role: "acme.bitrix24.ru" is the head of branches the file does not list '
        "(ekb.acme.ru, kzn.acme.ru, omsk.acme.ru, spb.acme.ru), so it must stay a head",
    ]


async def test_a_head_without_branches_may_become_standalone(db: Database) -> None:
    data = example()
    for item in data["portals"]:
        item.pop("network", None)
        item.pop("demo_until", None)
    portal_entry(data, "acme.bitrix24.ru").pop("role")
    await db.load(example())

    summary = await db.load(data)

    assert summary.portals == Tally(updated=4, unchanged=1)
    assert not (await db.portal("acme.bitrix24.ru")).is_head
    spb = await db.portal("spb.acme.ru")
    assert (spb.head_id, spb.ever_in_network) == (None, True)


# Problems in the file.


async def test_a_file_with_problems_writes_nothing(db: Database) -> None:
    await db.load(example())
    before = await db.row_counts()

    data = example()
    portal_entry(data, "spb.acme.ru")["name"] = "Renamed"
    data["people"].append({"telegram_id": 2001, "name": "New Person", "memberships": []})
    data["people"].append({"telegram_id": 1001, "name": "Twin"})
    problems = await db.refused(data)

    assert problems == ["people[14].telegram_id: 1001 is already at people[0]"]
    assert await db.row_counts() == before
    assert (await db.portal("spb.acme.ru")).name == "Acme St Petersburg"


async def test_a_file_refused_by_the_database_writes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    await upgrade(engine)
    db = Database(engine)
    try:
        data = example()
        portal_entry(data, "spb.acme.ru")["network"] = "elsewhere.ru"
        before = await db.row_counts()

        assert await db.refused(data) == ['portals[1].network: no such head portal "elsewhere.ru"']
        assert await db.row_counts() == before == dict.fromkeys(before, 0)
    finally:
        await engine.dispose()


def test_the_domain_example_names_the_place_of_a_missing_portal() -> None:
    data = {
        "portals": [
            {
                "address": "acme.bitrix24.ru",
                "name": "Acme HQ",
                "plan": "enterprise",
                "role": "head",
            },
        ],
        "people": [
            {
                "telegram_id": 1001,
                "name": "Anna Petrova",
                "memberships": [{"portal": "acme.bitrix24.ru", "role": "admin"}],
            },
            {"telegram_id": 1002, "name": "Boris Ivanov"},
            {"name": "Vera Sokolova", "email": "vera@acme.ru"},
            {
                "telegram_id": 1004,
                "name": "Gleb",
                "memberships": [{"portal": "https://SPB.acme.ru/", "role": "employee"}],
            },
        ],
    }

    assert problems_of(data) == ['people[3].memberships[0].portal: no such portal "spb.acme.ru"']


def test_every_problem_is_listed_at_its_place() -> None:
    data = {
        "portals": [
            {
                "address": "acme.bitrix24.ru",
                "name": "Acme HQ",
                "plan": "professional",
                "role": "head",
            },
            {"address": "spb.acme.ru", "name": "", "plan": "gold", "nmae": "typo"},
            {
                "address": "kzn.acme.ru",
                "name": "Kazan",
                "plan": "free",
                "role": "branch",
                "network": "nsk.acme.ru",
                "demo_until": "2027-01-01T00:00:00",
            },
            {
                "address": "nsk.acme.ru",
                "name": "N" * 201,
                "plan": "basic",
                "demo_until": "2027-01-01T00:00:00Z",
            },
            {
                "address": "msk.acme.ru",
                "name": "Moscow",
                "plan": "enterprise",
                "role": "head",
                "network": "acme.bitrix24.ru",
            },
            "oops",
        ],
        "departments": [
            {"portal": "acme.bitrix24.ru", "id": "sales", "name": "Sales", "head": 1002},
            {"portal": "acme.bitrix24.ru", "id": "sales", "name": "Sales again"},
            {"portal": "acme.bitrix24.ru", "id": "it", "name": "IT", "head": "nobody@acme.ru"},
            {"portal": "acme.bitrix24.ru", "id": "hr", "name": "HR", "head": 1001},
            {"portal": "kzn.acme.ru", "id": "kzn-hr", "name": "HR", "head": "vera@acme.ru"},
            {"portal": "acme.bitrix24.ru", "id": "x", "name": "X", "head": True},
            {"portal": "omsk.acme.ru", "id": "y", "name": "Y"},
            {"portal": "acme.bitrix24.ru", "id": 5, "name": "Five"},
        ],
        "people": [
            {
                "telegram_id": 1001,
                "name": "Anna",
                "language": "de",
                "username": "a b",
                "memberships": [
                    {"portal": "kzn.acme.ru", "role": "admin"},
                    {"portal": "https://KZN.acme.ru/", "role": "employee"},
                    {"portal": "acme.bitrix24.ru", "role": "owner", "department": ["it", "it"]},
                ],
            },
            {"telegram_id": -5, "name": "Boris", "email": "boris@", "phone": "call me"},
            {
                "telegram_id": "1003",
                "email": "VERA@acme.ru",
                "memberships": [
                    {
                        "portal": "acme.bitrix24.ru",
                        "role": "employee",
                        "department": "nope",
                        "title": "x",
                    }
                ],
            },
            {"name": "Vera", "email": "vera@acme.ru", "memberships": {}},
            {"name": "Lonely"},
            {"name": "Ivan", "memberships": [{"portal": "acme.bitrix24.ru", "role": "employee"}]},
            {"name": "Ivan", "memberships": [{"portal": "acme.bitrix24.ru", "role": "employee"}]},
            {"name": "Phone one", "phone": "+7 900 000-00-01"},
            {"name": "Phone two", "phone": "+79000000001"},
            {
                "telegram_id": 1.5,
                "name": "Float",
                "memberships": [{"portal": "http://acme.bitrix24.ru", "role": "employee"}],
            },
        ],
        "peoples": [],
    }

    assert problems_of(data) == [
        'peoples: unknown key; did you mean "people"?',
        'portals[0].plan: a head must be on "enterprise"',
        'portals[1].nmae: unknown key; did you mean "name"?',
        "portals[1].name: must not be empty",
        'portals[1].plan: "gold" is not one of "free", "basic", "standard", "professional", '
        '"enterprise"',
        'portals[2].role: "branch" is not one of "head"',
        'portals[2].demo_until: "2027-01-01T00:00:00" is not an ISO 8601 date and time with a '
        "zone, such as 2027-01-15T09:00:00Z or 2027-01-15T12:00:00+03:00",
        "portals[3].name: is longer than 200 characters",
        'portals[3].demo_until: only a free branch (plan "free" with a "network") has a demo',
        "portals[4].network: a head cannot be a branch of another network",
        "portals[5]: must be an object, not a string",
        'departments[1].id: "sales" on "acme.bitrix24.ru" is already at departments[0]',
        "departments[5].head: must be a telegram_id (a number) or an email (a string)",
        'departments[6].portal: no such portal "omsk.acme.ru"',
        "departments[7].id: must be a string, not a number",
        'people[0].username: "a b" is not a Telegram username',
        'people[0].language: "de" is not one of "ru", "en"',
        'people[0].memberships[1].portal: "kzn.acme.ru" is already at people[0].memberships[0]',
        'people[0].memberships[2].role: "owner" is not one of "admin", "employee"',
        'people[0].memberships[2].department[1]: "it" is listed twice',
        "people[1].telegram_id: -5 is not a Telegram id: it must be positive",
        'people[1].email: "boris@" is not an email address',
        'people[1].phone: "call me" is not a phone number',
        "people[2].name: is required",
        "people[2].telegram_id: must be a whole number, not a string",
        "people[2].memberships[0].title: unknown key; expected portal, role, position, department",
        'people[2].memberships[0].department: no department "nope" on "acme.bitrix24.ru"',
        "people[3].memberships: must be an array, not an object",
        'people[3].email: "vera@acme.ru" is already at people[2]',
        "people[4]: a person with no telegram_id, email or phone needs a membership, "
        "or they cannot be recognised the next time the file is loaded",
        'people[6]: "Ivan" first on "acme.bitrix24.ru" is already at people[5]; give one of '
        "them a telegram_id, email or phone",
        'people[8].phone: "+79000000001" is already at people[7]',
        "people[9].telegram_id: must be a whole number, not 1.5",
        'people[9].memberships[0].portal: "http://acme.bitrix24.ru" must be a host name or an '
        "https:// address",
        'portals[2].network: "nsk.acme.ru" is not a head: it has no "role": "head" at portals[3]',
        "departments[0].head: no person with telegram_id 1002 in the file",
        'departments[2].head: no person with email "nobody@acme.ru" in the file',
        'departments[4].head: people[3] (Vera) is not on the staff of "kzn.acme.ru"',
    ]


def test_addresses_are_compared_in_their_canonical_form() -> None:
    data = {
        "portals": [
            {"address": "https://Shop.Example.ru/", "name": "Shop", "plan": "basic"},
            {"address": "shop.example.ru.", "name": "Shop again", "plan": "basic"},
            {"address": "https://магазин.рф", "name": "Магазин", "plan": "basic"},
            {"address": "xn--80aairftm.xn--p1ai", "name": "Магазин", "plan": "basic"},
            {"address": "http://plain.example.ru", "name": "Plain", "plan": "basic"},
            {"address": "https://port.example.ru:8443", "name": "Port", "plan": "basic"},
            {"address": "10.0.0.1", "name": "IP", "plan": "basic"},
            {"address": "not a host", "name": "Bad", "plan": "basic"},
            {"address": "   ", "name": "Blank", "plan": "basic"},
            {"name": "Nowhere", "plan": "basic"},
        ]
    }

    assert problems_of(data) == [
        'portals[1].address: "shop.example.ru" is already at portals[0]',
        'portals[3].address: "xn--80aairftm.xn--p1ai" is already at portals[2]',
        'portals[4].address: "http://plain.example.ru" must be a host name or an https:// address',
        'portals[5].address: "https://port.example.ru:8443" must not have a port',
        'portals[6].address: "10.0.0.1" must be a host name, not an IP address',
        'portals[7].address: "not a host" is not a host name',
        "portals[8].address: must not be empty",
        "portals[9].address: is required",
    ]


def test_department_cycles_are_reported_once_each() -> None:
    data = {
        "portals": [
            {"address": "a.example.ru", "name": "A", "plan": "basic"},
            {"address": "b.example.ru", "name": "B", "plan": "basic"},
        ],
        "departments": [
            {"portal": "a.example.ru", "id": "root", "name": "Root"},
            {"portal": "a.example.ru", "id": "one", "name": "One", "parent": "three"},
            {"portal": "a.example.ru", "id": "two", "name": "Two", "parent": "one"},
            {"portal": "a.example.ru", "id": "three", "name": "Three", "parent": "two"},
            {"portal": "a.example.ru", "id": "under", "name": "Under", "parent": "two"},
            {"portal": "a.example.ru", "id": "self", "name": "Self", "parent": "self"},
            {"portal": "a.example.ru", "id": "lost", "name": "Lost", "parent": "missing"},
            {"portal": "b.example.ru", "id": "x", "name": "X", "parent": "y"},
            {"portal": "b.example.ru", "id": "y", "name": "Y", "parent": "x"},
            {"portal": "b.example.ru", "id": "z", "name": "Z", "parent": "root"},
        ],
    }

    assert problems_of(data) == [
        "departments[5].parent: a department cannot be its own parent",
        'departments[6].parent: no department "missing" on "a.example.ru"',
        'departments[9].parent: no department "root" on "b.example.ru"',
        "departments[1].parent: the parents go round in a circle: one → three → two → one",
        "departments[7].parent: the parents go round in a circle: x → y → x",
    ]


def test_the_top_level_must_be_an_object_of_arrays() -> None:
    assert problems_of([]) == ["top level: must be an object with portals, departments and people"]
    assert problems_of({"portals": {}, "people": "none"}) == [
        "portals: must be an array, not an object",
        "people: must be an array, not a string",
    ]
    assert parse_network_file({}).portals == ()


def test_load_file_reports_json_errors_at_their_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "portals": [\n    {"address": "a.ru",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(NetworkFileError) as caught:
        load_file(broken)
    assert caught.value.problems == [
        FileProblem("line 3, column 24", "Expecting property name enclosed in double quotes")
    ]

    twice = tmp_path / "twice.json"
    twice.write_text('{"portals": [], "portals": []}', encoding="utf-8")
    with pytest.raises(NetworkFileError) as caught:
        load_file(twice)
    assert [str(problem) for problem in caught.value.problems] == [
        f'{twice}: key "portals" appears twice in one object'
    ]

    with pytest.raises(NetworkFileError) as caught:
        load_file(tmp_path / "missing.json")
    assert caught.value.problems[0].place == str(tmp_path / "missing.json")

    assert load_file(EXAMPLE) == json.loads(EXAMPLE.read_text(encoding="utf-8"))


# Size.


def large_file(people: int, departments: int) -> dict[str, Any]:
    """A network of five portals, each with a three-level structure, and its staff."""
    addresses = ["head.example.ru", *(f"branch{number}.example.ru" for number in range(1, 5))]
    portals: list[dict[str, Any]] = [
        {"address": addresses[0], "name": "Head", "plan": "enterprise", "role": "head"}
    ] + [
        {
            "address": address,
            "name": f"Branch {address}",
            "plan": "standard",
            "network": addresses[0],
        }
        for address in addresses[1:]
    ]

    per_portal = departments // len(addresses)
    structure: list[dict[str, Any]] = []
    for address in addresses:
        for number in range(per_portal):
            department: dict[str, Any] = {
                "portal": address,
                "id": f"d{number}",
                "name": f"Отдел {number}",
            }
            if number > 0:
                department["parent"] = f"d{(number - 1) // 10}"
            structure.append(department)

    staff = []
    for number in range(people):
        home = addresses[number % len(addresses)]
        memberships = [
            {
                "portal": home,
                "role": "admin" if number < 10 else "employee",
                "department": f"d{number % per_portal}",
                "position": "Специалист",
            }
        ]
        if number % 7 == 0 and home != addresses[0]:
            memberships.append({"portal": addresses[0], "role": "employee"})
        person: dict[str, Any] = {"name": f"Сотрудник {number}", "memberships": memberships}
        if number % 3 == 0:
            person["telegram_id"] = 100_000 + number
        elif number % 3 == 1:
            person["email"] = f"person{number}@example.ru"
        else:
            person["phone"] = f"+7900{number:07d}"
        staff.append(person)
    return {"portals": portals, "departments": structure, "people": staff}


async def test_a_large_file_needs_few_statements(db: Database) -> None:
    data = large_file(people=3000, departments=500)

    db.statements.clear()
    started = time.perf_counter()
    summary = await db.load(data)
    first_seconds = time.perf_counter() - started

    assert summary.people == Tally(created=3000)
    assert summary.departments == Tally(created=500)
    assert db.statements["SELECT"] < 30, db.statements
    assert db.statements["INSERT"] < 30, db.statements

    db.statements.clear()
    started = time.perf_counter()
    again = await db.load(data)
    second_seconds = time.perf_counter() - started

    assert not again.changed
    assert db.statements["SELECT"] < 30, db.statements
    assert db.writes == 0
    assert first_seconds < 10 and second_seconds < 10, (first_seconds, second_seconds)
