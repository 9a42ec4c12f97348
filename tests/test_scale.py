"""A large portal: staff and structure pages stay within Telegram's limits, and the number of
SQL statements per update does not grow with the portal's size."""

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.rules import Plan, Role
from services.directory import STAFF_PAGE_SIZE
from storage.models import Department, Membership, Person, Portal, membership_departments
from tests.factories import EPOCH
from tests.statements import counting


async def build_portal(
    engine: AsyncEngine, address: str, people: int, departments: int, viewer_id: int
) -> None:
    """A portal with `people` members spread over a `departments`-node tree, in bulk."""
    async with engine.begin() as connection:
        portal_id = (
            await connection.execute(
                insert(Portal)
                .values(
                    address=address,
                    name=address,
                    plan=Plan.STANDARD.value,
                    is_head=False,
                    ever_in_network=False,
                    created_at=EPOCH,
                )
                .returning(Portal.id)
            )
        ).scalar_one()
        first_person = (
            await connection.execute(
                insert(Person)
                .values(
                    name="Ада Ёлкина",
                    name_folded="ада ёлкина",
                    telegram_id=viewer_id,
                    started_at=EPOCH,
                    created_at=EPOCH,
                )
                .returning(Person.id)
            )
        ).scalar_one()
        await connection.execute(
            insert(Person),
            [
                {
                    "name": f"Сотрудник {number:05d} <i>&",
                    "name_folded": f"сотрудник {number:05d} <i>&",
                    "created_at": EPOCH,
                }
                for number in range(people - 1)
            ],
        )
        person_ids = list(
            (
                await connection.execute(
                    select(Person.id).where(Person.id >= first_person).order_by(Person.id)
                )
            ).scalars()
        )
        department_rows = [
            {
                "portal_id": portal_id,
                "key": f"d{number}",
                # 40 Cyrillic letters: the longest names people use.
                "name": f"{'Отдел продаж и обслуживания клиентов'[:32]} №{number:04d}",
                "parent_id": None,
                "head_person_id": person_ids[number % people],
            }
            for number in range(departments)
        ]
        await connection.execute(insert(Department), department_rows)
        department_ids = list(
            (
                await connection.execute(
                    select(Department.id)
                    .where(Department.portal_id == portal_id)
                    .order_by(Department.id)
                )
            ).scalars()
        )
        for number, department_id in enumerate(department_ids[1:], start=1):
            await connection.execute(
                Department.__table__.update()
                .where(Department.id == department_id)
                .values(parent_id=department_ids[(number - 1) // 3])
            )

        await connection.execute(
            insert(Membership),
            [
                {
                    "person_id": person_id,
                    "portal_id": portal_id,
                    "role": (Role.ADMIN if person_id == first_person else Role.EMPLOYEE).value,
                    "position": "Менеджер",
                }
                for person_id in person_ids
            ],
        )
        membership_ids = list(
            (
                await connection.execute(
                    select(Membership.id)
                    .where(Membership.portal_id == portal_id)
                    .order_by(Membership.id)
                )
            ).scalars()
        )
        await connection.execute(
            insert(membership_departments),
            [
                {
                    "membership_id": membership_id,
                    "department_id": department_ids[index % departments],
                }
                for index, membership_id in enumerate(membership_ids)
                if index % 10
            ],
        )


async def statements_for(running_bot, engine, action) -> int:
    with counting(engine) as counter:
        await action()
        await running_bot.settle()
    return counter.count


async def walk(running_bot, user, command: str, most: int = 1000) -> tuple[list[int], list[str]]:
    """Send the command, then tap ▶️ up to the last page: statements per update, page texts."""
    api = running_bot.api
    engine = running_bot.app.engine
    counts = [await statements_for(running_bot, engine, lambda: api.send(user, command))]
    message = await api.reply(user)
    texts = [message.text]
    while "▶️" in message.button_texts() and len(texts) < most:
        counts.append(
            await statements_for(running_bot, engine, lambda m=message: api.tap(user, m, "▶️"))
        )
        message = await api.reply(user)
        texts.append(message.text)
    return counts, texts


async def test_large_portal_pages_and_constant_queries(running_bot) -> None:
    api = running_bot.api
    engine = running_bot.app.engine
    # The outbox job would add its own statements to the counts.
    running_bot.app.dispatcher.workflow_data["scheduler"].pause()
    await build_portal(engine, "big.example.ru", 3000, 500, viewer_id=7001)
    big_viewer = api.user(7001, "Ада", language_code="en")

    structure_counts, structure_texts = await walk(running_bot, big_viewer, "/structure")
    assert len(structure_texts) > 1
    assert all(len(text.encode("utf-16-le")) // 2 <= 4096 for text in structure_texts)
    drawn = "\n".join(structure_texts)
    for number in (0, 1, 250, 499):
        assert drawn.count(f"№{number:04d} (") == 1
    assert "Not in any department (300)" in drawn
    assert drawn.splitlines()[0].startswith("big.example.ru · 3000 people")

    staff_counts, staff_texts = await walk(running_bot, big_viewer, "/staff", most=4)
    assert "1. Ада Ёлкина" in staff_texts[0]
    assert f"{STAFF_PAGE_SIZE * 4}. Сотрудник" in staff_texts[-1]
    assert "page 4 of 150" in staff_texts[-1]
    last = await statements_for(
        running_bot,
        engine,
        lambda: api.press(big_viewer, api.last(big_viewer), "sp:1:149:0", check=False),
    )
    assert "3000. Сотрудник 02998 <i>&" in (await api.reply(big_viewer)).text
    staff_counts.append(last)

    search_counts, search_texts = await walk(running_bot, big_viewer, "/staff сотрудник 0001")
    assert len(search_texts) == 1 and "10 people found" in search_texts[0]

    # The same walks on a portal a hundred times smaller cost the same statements per update.
    await build_portal(engine, "small.example.ru", 30, 5, viewer_id=7002)
    small_viewer = api.user(7002, "Ада", language_code="en")
    small_structure, _ = await walk(running_bot, small_viewer, "/structure")
    small_staff, _ = await walk(running_bot, small_viewer, "/staff")

    print(structure_counts, small_structure, staff_counts, small_staff, search_counts)
    assert max(structure_counts) == max(small_structure)
    assert set(staff_counts) == set(small_staff)
    assert max(staff_counts + structure_counts + search_counts) <= 8
