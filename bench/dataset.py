"""Networks of the sizes the benchmarks compare, written in bulk to a SQLite file.

Each size is one network: a head portal and its branches. One person, the viewer, is an
administrator of every portal of it, with the measured branch as the current portal. The
measured branch has `branch_people` members in a tree of `departments` departments; the rest of
the people are spread over the other portals, and one in ten of the branch's staff is on the
head's staff too. Ids are given here, so nothing is read back while building.
"""

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.rules import Plan, Role
from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import Base, Department, Membership, Person, Portal, membership_departments

MOMENT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
VIEWER_TELEGRAM_ID = 1001
HEAD_ID = 1
BRANCH_ID = 2
# Departments of each portal other than the measured branch.
OTHER_DEPARTMENTS = 10
# Children per department in the measured branch's tree.
FAN_OUT = 10
# A surname a few in a hundred people share, searched for by part of it.
SEARCH_TEXT = "соколов"

FIRST_NAMES = (  # noqa: SIM905 - a list of names reads best as text
    "Александр Алексей Анастасия Андрей Анна Артём Валерия Виктор Виктория Дарья Денис Дмитрий "
    "Евгения Екатерина Елена Иван Игорь Ирина Кирилл Ксения Максим Марина Мария Михаил Наталья "
    "Никита Николай Ольга Павел Полина Роман Светлана Сергей Софья Татьяна Юлия Юрий"
).split()
SURNAMES = (  # noqa: SIM905 - a list of names reads best as text
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев "
    "Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв "
    "Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов Поляков "
    "Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов Филиппов Комаров "
    "Давыдов Беляев Герасимов Богданов Осипов Сидоров"
).split()
DEPARTMENT_NAMES = (
    "Отдел продаж",
    "Бухгалтерия",
    "Служба поддержки клиентов",
    "Склад и логистика",
    "Отдел кадров",
    "Маркетинг",
    "Юридический отдел",
    "Разработка",
    "Служба качества",
    "Закупки",
)
POSITIONS = ("Менеджер", "Специалист", "Ведущий специалист", "Руководитель группы", None)


@dataclass(frozen=True, slots=True)
class Size:
    label: str
    portals: int
    branch_people: int
    departments: int
    people_in_all: int


SIZES = (
    Size("small", 10, 100, 10, 1_000),
    Size("medium", 100, 1_000, 100, 10_000),
    Size("large", 1_000, 10_000, 1_000, 100_000),
)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def person_name(number: int) -> str:
    # Neighbouring numbers differ in both parts, so names spread over the alphabet.
    first = FIRST_NAMES[number % len(FIRST_NAMES)]
    surname = SURNAMES[(number // len(FIRST_NAMES) + number) % len(SURNAMES)]
    if first.endswith(("а", "я")) and surname[-1] not in "аяь":
        surname += "а"
    return f"{surname} {first}"


def portal_rows(size: Size) -> list[dict[str, Any]]:
    rows = [
        {
            "id": HEAD_ID,
            "address": "head.example.ru",
            "name": "Головная компания",
            "plan": Plan.ENTERPRISE.value,
            "is_head": True,
            "head_id": None,
            "ever_in_network": True,
            "created_at": MOMENT,
        }
    ]
    rows += [
        {
            "id": portal_id,
            "address": f"branch-{portal_id:04d}.example.ru",
            "name": f"Филиал {portal_id:04d}",
            "plan": Plan.STANDARD.value,
            "is_head": False,
            "head_id": HEAD_ID,
            "connected_at": MOMENT,
            "ever_in_network": True,
            "created_at": MOMENT,
        }
        for portal_id in range(2, size.portals + 1)
    ]
    return rows


def people_rows(size: Size) -> Iterator[dict[str, Any]]:
    yield {
        "id": 1,
        "name": "Анна Головина",
        "name_folded": "анна головина",
        "telegram_id": VIEWER_TELEGRAM_ID,
        "telegram_language": "en",
        "current_portal_id": BRANCH_ID,
        "started_at": MOMENT,
        "created_at": MOMENT,
    }
    for person_id in range(2, size.people_in_all + 1):
        name = person_name(person_id)
        yield {
            "id": person_id,
            "name": name,
            "name_folded": name.casefold(),
            "telegram_id": None,
            "telegram_language": None,
            "current_portal_id": None,
            "started_at": None,
            "created_at": MOMENT,
        }


def home_portal(size: Size, person_id: int) -> int:
    """The one portal each person other than the viewer is on (some are on the head's too)."""
    if person_id <= size.branch_people:
        return BRANCH_ID
    # The others in turn: the head (1), then the portals after the measured branch (3 on).
    turn = person_id % (size.portals - 1)
    return HEAD_ID if turn == 0 else turn + 2


def membership_rows(size: Size) -> Iterator[dict[str, Any]]:
    membership_id = 0
    for portal_id in range(1, size.portals + 1):
        membership_id += 1
        yield {
            "id": membership_id,
            "person_id": 1,
            "portal_id": portal_id,
            "role": Role.ADMIN.value,
            "position": "Директор",
        }
    for person_id in range(2, size.people_in_all + 1):
        homes = [home_portal(size, person_id)]
        if homes[0] == BRANCH_ID and person_id % 10 == 0:
            homes.append(HEAD_ID)
        for portal_id in homes:
            membership_id += 1
            yield {
                "id": membership_id,
                "person_id": person_id,
                "portal_id": portal_id,
                "role": (Role.ADMIN if person_id % 97 == 0 else Role.EMPLOYEE).value,
                "position": POSITIONS[person_id % len(POSITIONS)],
            }


def department_count(size: Size, portal_id: int) -> int:
    return size.departments if portal_id == BRANCH_ID else OTHER_DEPARTMENTS


def first_department_ids(size: Size) -> dict[int, int]:
    """The id of each portal's first department; a portal's departments have adjacent ids."""
    first: dict[int, int] = {}
    next_id = 1
    for portal_id in range(1, size.portals + 1):
        first[portal_id] = next_id
        next_id += department_count(size, portal_id)
    return first


def department_rows(size: Size) -> Iterator[dict[str, Any]]:
    first = first_department_ids(size)
    for portal_id in range(1, size.portals + 1):
        for number in range(department_count(size, portal_id)):
            parent = None if number == 0 else first[portal_id] + (number - 1) // FAN_OUT
            yield {
                "id": first[portal_id] + number,
                "portal_id": portal_id,
                "key": f"d{number}",
                "name": f"{DEPARTMENT_NAMES[number % len(DEPARTMENT_NAMES)]} №{number:04d}",
                "parent_id": parent,
                # People 2.. are on the branch; the viewer heads the others' departments.
                "head_person_id": 2 + number if portal_id == BRANCH_ID else 1,
            }


def placement_rows(size: Size, memberships: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each membership in one department of its portal; one in ten in none."""
    first = first_department_ids(size)
    for index, membership in enumerate(memberships):
        if index % 10 == 9:
            continue
        portal_id = membership["portal_id"]
        yield {
            "membership_id": membership["id"],
            "department_id": first[portal_id] + index % department_count(size, portal_id),
        }


async def insert_in_chunks(
    connection: AsyncConnection,
    table: type[Base] | Table,
    rows: Iterator[dict[str, Any]] | list[dict[str, Any]],
) -> None:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == 20_000:
            await connection.execute(insert(table), chunk)
            chunk = []
    if chunk:
        await connection.execute(insert(table), chunk)


async def build(size: Size, path: Path) -> float:
    """Write the network of `size` to a new SQLite file at `path`; returns seconds taken."""
    started = time.perf_counter()
    engine = create_engine(sqlite_url(path))
    try:
        await upgrade(engine)
        memberships = list(membership_rows(size))
        async with engine.begin() as connection:
            await insert_in_chunks(connection, Portal, portal_rows(size))
            # Departments name their heads, so the people go in first.
            await insert_in_chunks(connection, Person, people_rows(size))
            await insert_in_chunks(connection, Department, department_rows(size))
            await insert_in_chunks(connection, Membership, memberships)
            await insert_in_chunks(
                connection, membership_departments, placement_rows(size, memberships)
            )
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def migrate_empty(path: Path) -> None:
    """A database with the schema up to date and no rows."""
    engine = create_engine(sqlite_url(path))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="build each size once and print the time")
    parser.parse_args()

    async def build_all() -> None:
        with tempfile.TemporaryDirectory() as directory:
            for size in SIZES:
                path = Path(directory) / f"{size.label}.sqlite3"
                seconds = await build(size, path)
                megabytes = path.stat().st_size / 2**20
                print(f"{size.label:<8}{seconds:>8.1f} s{megabytes:>8.1f} MB")

    asyncio.run(build_all())
