"""A portal's structure version: the database raises it on every change the structure page
shows, whoever makes it, and the page reads the tree again only when it has moved."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Executable, delete, event, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.keyboards.callbacks import StructurePageTap
from domain.rules import Role
from services.directory import structure
from storage.db import create_engine
from storage.models import Department, Membership, Person, Portal, membership_departments
from tests import factories
from tests.harness import RunningBot

ANNA, BORIS = 3001, 3002
# Only the structure statement names this common table expression.
STRUCTURE_MARK = "per_membership"


@dataclass(frozen=True)
class Scene:
    """Acme, with two departments and two people on its staff, and another portal beside it."""

    acme: int
    other: int
    sales: int
    b2b: int
    anna: int
    boris: int
    vera: int
    anna_membership: int
    boris_membership: int


@pytest.fixture
async def scene(session_factory: async_sessionmaker[AsyncSession]) -> Scene:
    async with session_factory() as session:
        acme = await factories.portal(session, "acme.example.ru", "Acme")
        other = await factories.portal(session, "other.example.ru", "Other")
        anna = await factories.person(session, "Анна", ANNA)
        boris = await factories.person(session, "Борис", BORIS)
        vera = await factories.person(session, "Вера")
        sales = await factories.department(session, acme, "Sales", head=anna)
        b2b = await factories.department(session, acme, "B2B", parent=sales)
        await factories.department(session, other, "Elsewhere", head=vera)
        anna_membership = await factories.member(
            session, anna, acme, Role.ADMIN, departments=[sales]
        )
        boris_membership = await factories.member(session, boris, acme, departments=[b2b])
        await factories.member(session, vera, other)
        await session.commit()
        return Scene(
            acme=acme.id,
            other=other.id,
            sales=sales.id,
            b2b=b2b.id,
            anna=anna.id,
            boris=boris.id,
            vera=vera.id,
            anna_membership=anna_membership.id,
            boris_membership=boris_membership.id,
        )


async def versions(session_factory: async_sessionmaker[AsyncSession]) -> dict[int, int]:
    async with session_factory() as session:
        rows = await session.execute(select(Portal.id, Portal.structure_version))
        return {portal_id: version for portal_id, version in rows.all()}


async def change(
    session_factory: async_sessionmaker[AsyncSession], *statements: Executable
) -> None:
    async with session_factory() as session:
        for statement in statements:
            await session.execute(statement)
        await session.commit()


Change = Callable[[Scene], list[Executable]]
placements = membership_departments.c

SHOWN: dict[str, Change] = {
    "a department added": lambda s: [
        insert(Department).values(portal_id=s.acme, key="hr", name="HR")
    ],
    "a department renamed": lambda s: [
        update(Department).where(Department.id == s.sales).values(name="Продажи")
    ],
    "a department moved": lambda s: [
        update(Department).where(Department.id == s.b2b).values(parent_id=None)
    ],
    "a department's head changed": lambda s: [
        update(Department).where(Department.id == s.b2b).values(head_person_id=s.boris)
    ],
    "a department removed": lambda s: [delete(Department).where(Department.id == s.b2b)],
    "a person placed in a department": lambda s: [
        insert(membership_departments).values(
            membership_id=s.boris_membership, department_id=s.sales
        )
    ],
    "a person taken out of a department": lambda s: [
        delete(membership_departments).where(placements.membership_id == s.boris_membership)
    ],
    "a placement moved": lambda s: [
        update(membership_departments)
        .where(placements.membership_id == s.boris_membership)
        .values(department_id=s.sales)
    ],
    "a membership added": lambda s: [
        insert(Membership).values(person_id=s.vera, portal_id=s.acme, role=Role.EMPLOYEE.value)
    ],
    "a membership removed, with its placements": lambda s: [
        delete(Membership).where(Membership.id == s.boris_membership)
    ],
    "a department head renamed": lambda s: [
        update(Person).where(Person.id == s.anna).values(name="Анна Петрова")
    ],
    "a department head's person deleted": lambda s: [delete(Person).where(Person.id == s.anna)],
    "plain SQL": lambda s: [
        text("UPDATE departments SET name = 'Sales & Co' WHERE id = :id").bindparams(id=s.sales)
    ],
}

NOT_SHOWN: dict[str, Change] = {
    "a person's phone": lambda s: [
        update(Person).where(Person.id == s.anna).values(phone="+79990000001")
    ],
    "a membership's position and role": lambda s: [
        update(Membership)
        .where(Membership.id == s.boris_membership)
        .values(position="Менеджер", role=Role.ADMIN.value)
    ],
    "a department's key": lambda s: [
        update(Department).where(Department.id == s.sales).values(key="sales-2")
    ],
    "a department written again unchanged": lambda s: [
        update(Department)
        .where(Department.id == s.sales)
        .values(name="Sales", parent_id=None, head_person_id=s.anna)
    ],
    "someone who heads nothing renamed": lambda s: [
        update(Person).where(Person.id == s.boris).values(name="Борис Белов")
    ],
    "another portal's department": lambda s: [
        insert(Department).values(portal_id=s.other, key="x", name="X")
    ],
    "another portal's department head renamed": lambda s: [
        update(Person).where(Person.id == s.vera).values(name="Вера Волкова")
    ],
}


@pytest.mark.parametrize("name", list(SHOWN))
async def test_a_change_the_structure_page_shows_raises_the_portals_version(
    session_factory: async_sessionmaker[AsyncSession], scene: Scene, name: str
) -> None:
    before = await versions(session_factory)
    await change(session_factory, *SHOWN[name](scene))
    after = await versions(session_factory)
    assert after[scene.acme] > before[scene.acme]
    assert after[scene.other] == before[scene.other]


@pytest.mark.parametrize("name", list(NOT_SHOWN))
async def test_a_change_it_does_not_show_leaves_the_version(
    session_factory: async_sessionmaker[AsyncSession], scene: Scene, name: str
) -> None:
    before = await versions(session_factory)
    await change(session_factory, *NOT_SHOWN[name](scene))
    assert (await versions(session_factory))[scene.acme] == before[scene.acme]


async def test_a_move_to_another_portal_raises_both(
    session_factory: async_sessionmaker[AsyncSession], scene: Scene
) -> None:
    for moved in (
        update(Department).where(Department.id == scene.b2b).values(portal_id=scene.other),
        update(Membership)
        .where(Membership.id == scene.boris_membership)
        .values(portal_id=scene.other),
    ):
        before = await versions(session_factory)
        await change(session_factory, moved)
        after = await versions(session_factory)
        assert after[scene.acme] > before[scene.acme]
        assert after[scene.other] > before[scene.other]


async def test_a_portal_is_deleted_with_its_structure(
    session_factory: async_sessionmaker[AsyncSession], scene: Scene
) -> None:
    """The triggers on the rows that go with the portal find it gone, and do nothing."""
    before = await versions(session_factory)
    await change(session_factory, delete(Portal).where(Portal.id == scene.acme))
    assert await versions(session_factory) == {scene.other: before[scene.other]}
    async with session_factory() as session:
        left = await session.execute(
            select(func.count()).select_from(Department).where(Department.portal_id == scene.acme)
        )
        assert left.scalar_one() == 0
        assert await session.scalar(select(func.count()).select_from(membership_departments)) == 0


@dataclass
class StatementLog:
    statements: list[str] = field(default_factory=list)

    def __call__(self, _connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.statements.append(statement)

    @property
    def structure_reads(self) -> int:
        return sum(STRUCTURE_MARK in statement for statement in self.statements)


@contextmanager
def logging_statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    log = StatementLog()
    event.listen(engine.sync_engine, "before_cursor_execute", log)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", log)


async def version_of(session: AsyncSession, portal_id: int) -> int:
    found = await session.scalar(select(Portal.structure_version).where(Portal.id == portal_id))
    assert found is not None
    return found


async def test_a_tree_is_kept_only_when_its_transaction_commits(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession], scene: Scene
) -> None:
    async def drawn(*, commit: bool) -> int:
        with logging_statements(engine) as log:
            async with session_factory() as session:
                version = await version_of(session, scene.acme)
                await structure(session, scene.acme, version)
                if commit:
                    await session.commit()
        return log.structure_reads

    assert await drawn(commit=False) == 1
    # Read in a transaction that rolled back, it may hold changes that never were.
    assert await drawn(commit=False) == 1
    async with session_factory() as session:
        await structure(session, scene.acme, await version_of(session, scene.acme))
        await session.rollback()
        # Nor is it kept when a later transaction of the same session commits.
        await session.commit()
    assert await drawn(commit=True) == 1
    assert await drawn(commit=False) == 0
    assert await drawn(commit=True) == 0


LONG_NAME = "Отдел продаж и обслуживания клиентов"


async def departments_over_two_pages(
    session_factory: async_sessionmaker[AsyncSession], portal_id: int
) -> None:
    rows = [
        {"portal_id": portal_id, "key": f"d{number}", "name": f"{LONG_NAME} №{number:03d}"}
        for number in range(1, 121)
    ]
    await change(session_factory, insert(Department).values(rows))


async def test_a_tap_on_an_unchanged_structure_reads_no_structure(
    running_bot: RunningBot,
    session_factory: async_sessionmaker[AsyncSession],
    database_url: str,
    scene: Scene,
) -> None:
    api = running_bot.api
    engine = running_bot.app.engine
    # The outbox job would add its own statements to the counts.
    running_bot.app.dispatcher.workflow_data["scheduler"].pause()
    await departments_over_two_pages(session_factory, scene.acme)
    anna = api.user(ANNA, "Анна", language_code="en")
    page = {
        number: StructurePageTap(portal_id=scene.acme, page=number).pack() for number in (0, 1)
    }

    async def shown(action: Callable[[], Any]) -> tuple[str, StatementLog]:
        with logging_statements(engine) as log:
            await action()
            await running_bot.settle()
        return (await api.reply(anna)).text, log

    first, log = await shown(lambda: api.send(anna, "/structure"))
    assert log.structure_reads == 1
    assert "Sales (2)" in first and f"{LONG_NAME} №001 (0)" in first

    # Pages back and forth: each tap draws the tree it drew before.
    second, log = await shown(lambda: api.press(anna, api.last(anna), page[1]))
    assert log.structure_reads == 0 and len(log.statements) <= 3
    assert f"{LONG_NAME} №120" in second and second != first
    again, log = await shown(lambda: api.press(anna, api.last(anna), page[0]))
    assert (again, log.structure_reads) == (first, 0)
    assert len(log.statements) <= 3

    # Another instance, with an engine and connections of its own, changes the structure.
    elsewhere = create_engine(database_url)
    try:
        async with elsewhere.begin() as connection:
            await connection.execute(
                update(Department).where(Department.id == scene.sales).values(name="Retail")
            )
            await connection.execute(
                insert(membership_departments).values(
                    membership_id=scene.boris_membership, department_id=scene.sales
                )
            )
    finally:
        await elsewhere.dispose()

    second, log = await shown(lambda: api.press(anna, api.last(anna), page[1]))
    assert log.structure_reads == 1 and len(log.statements) <= 3
    changed, log = await shown(lambda: api.press(anna, api.last(anna), page[0]))
    assert log.structure_reads == 0
    # Boris, in B2B and now in Sales too, is counted once there.
    assert "Retail (2)" in changed and "Sales" not in changed
    assert "B2B (1)" in changed


async def test_a_head_renamed_by_a_sync_or_import_is_shown_on_the_next_tap(
    running_bot: RunningBot,
    session_factory: async_sessionmaker[AsyncSession],
    scene: Scene,
) -> None:
    api = running_bot.api
    anna = api.user(ANNA, "Анна", language_code="en")
    await api.send(anna, "/structure")
    assert "Sales (2) — Анна" in (await api.reply(anna)).text
    await change(
        session_factory, update(Person).where(Person.id == scene.anna).values(name="Анна П.")
    )
    await api.send(anna, "/structure")
    assert "Sales (2) — Анна П." in (await api.reply(anna)).text
