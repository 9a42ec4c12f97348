"""Building portals, people and departments for tests, directly in the database."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.rules import Plan, Role
from storage.models import Department, Membership, Person, Portal

EPOCH = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def portal(
    session: AsyncSession,
    address: str,
    name: str | None = None,
    plan: Plan = Plan.STANDARD,
    *,
    head: Portal | None = None,
    is_head: bool = False,
    demo_until: datetime | None = None,
    ever_in_network: bool | None = None,
    incompatible_until: datetime | None = None,
) -> Portal:
    row = Portal(
        address=address,
        name=name or address,
        plan=plan.value,
        is_head=is_head,
        head_id=head.id if head is not None else None,
        connected_at=EPOCH if head is not None else None,
        demo_until=demo_until,
        ever_in_network=ever_in_network if ever_in_network is not None else head is not None,
        incompatible_until=incompatible_until,
        created_at=EPOCH,
    )
    session.add(row)
    await session.flush()
    return row


async def person(
    session: AsyncSession,
    name: str,
    telegram_id: int | None = None,
    *,
    language: str | None = None,
    started: bool = True,
    email: str | None = None,
) -> Person:
    row = Person(
        telegram_id=telegram_id,
        name=name,
        name_folded=name.casefold(),
        language=language,
        email=email,
        started_at=EPOCH if started and telegram_id is not None else None,
        created_at=EPOCH,
    )
    session.add(row)
    await session.flush()
    return row


async def member(
    session: AsyncSession,
    who: Person,
    where: Portal,
    role: Role = Role.EMPLOYEE,
    *,
    position: str | None = None,
    departments: list[Department] | None = None,
) -> Membership:
    row = Membership(person_id=who.id, portal_id=where.id, role=role.value, position=position)
    session.add(row)
    await session.flush()
    if departments:
        await session.refresh(row, attribute_names=["departments"])
        row.departments.extend(departments)
        await session.flush()
    return row


async def department(
    session: AsyncSession,
    where: Portal,
    name: str,
    *,
    key: str | None = None,
    parent: Department | None = None,
    head: Person | None = None,
) -> Department:
    row = Department(
        portal_id=where.id,
        key=key or name,
        name=name,
        parent_id=parent.id if parent is not None else None,
        head_person_id=head.id if head is not None else None,
    )
    session.add(row)
    await session.flush()
    return row
