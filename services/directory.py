"""A portal's staff list and structure, read in a fixed number of queries whatever its size."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.rules import Role
from domain.structure import DepartmentFacts, StructureTree, build_tree
from storage.models import Department, Membership, Person, membership_departments

STAFF_PAGE_SIZE = 20


@dataclass(frozen=True, slots=True)
class StaffRow:
    name: str
    role: Role
    position: str | None
    departments: list[str]


@dataclass(frozen=True, slots=True)
class StaffPage:
    rows: list[StaffRow]
    total: int
    page: int
    pages: int
    offset: int


def like_pattern(text: str) -> str:
    """A LIKE pattern matching names that contain `text`, whatever its letter case."""
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def staff_page(
    session: AsyncSession,
    portal_id: int,
    page: int,
    search: str | None = None,
    page_size: int = STAFF_PAGE_SIZE,
) -> StaffPage:
    """One page of the staff list, sorted by name; a page past the end gives the last one."""
    page = max(page, 0)
    rows, total = await _staff_rows(session, portal_id, page, search, page_size)
    pages = max(1, -(-total // page_size))
    if not rows and page >= pages and total:
        page = pages - 1
        rows, total = await _staff_rows(session, portal_id, page, search, page_size)

    departments = await _department_names(session, [membership_id for membership_id, *_ in rows])
    return StaffPage(
        rows=[
            StaffRow(
                name=name,
                role=Role(role),
                position=position,
                departments=departments.get(membership_id, []),
            )
            for membership_id, name, role, position in rows
        ],
        total=total,
        page=min(page, pages - 1),
        pages=pages,
        offset=min(page, pages - 1) * page_size,
    )


async def _staff_rows(
    session: AsyncSession, portal_id: int, page: int, search: str | None, page_size: int
) -> tuple[list[tuple[int, str, str, str | None]], int]:
    # The window count gives the total in the same round trip as the page.
    statement = (
        select(
            Membership.id,
            Person.name,
            Membership.role,
            Membership.position,
            func.count().over().label("total"),
        )
        .join(Person, Person.id == Membership.person_id)
        .where(Membership.portal_id == portal_id)
        .order_by(Person.name_folded, Person.id)
        .limit(page_size)
        .offset(page * page_size)
    )
    if search:
        statement = statement.where(Person.name_folded.like(like_pattern(search), escape="\\"))
    result = await session.execute(statement)
    fetched = result.all()
    total = fetched[0].total if fetched else 0
    if not fetched and page > 0:
        total = await _staff_count(session, portal_id, search)
    return [(row[0], row[1], row[2], row[3]) for row in fetched], total


async def _staff_count(session: AsyncSession, portal_id: int, search: str | None) -> int:
    statement = (
        select(func.count())
        .select_from(Membership)
        .join(Person, Person.id == Membership.person_id)
        .where(Membership.portal_id == portal_id)
    )
    if search:
        statement = statement.where(Person.name_folded.like(like_pattern(search), escape="\\"))
    return int((await session.execute(statement)).scalar_one())


async def _department_names(
    session: AsyncSession, membership_ids: list[int]
) -> dict[int, list[str]]:
    if not membership_ids:
        return {}
    result = await session.execute(
        select(membership_departments.c.membership_id, Department.name)
        .join(Department, Department.id == membership_departments.c.department_id)
        .where(membership_departments.c.membership_id.in_(membership_ids))
        .order_by(Department.name)
    )
    names: dict[int, list[str]] = {}
    for membership_id, name in result.all():
        names.setdefault(membership_id, []).append(name)
    return names


async def structure(session: AsyncSession, portal_id: int) -> StructureTree:
    """The whole department tree of a portal, in two queries."""
    departments = await session.execute(
        select(Department.id, Department.name, Department.parent_id, Person.name)
        .outerjoin(Person, Person.id == Department.head_person_id)
        .where(Department.portal_id == portal_id)
    )
    placements = await session.execute(
        select(Membership.id, membership_departments.c.department_id)
        .outerjoin(
            membership_departments,
            membership_departments.c.membership_id == Membership.id,
        )
        .where(Membership.portal_id == portal_id)
    )
    return build_tree(
        (
            DepartmentFacts(id=row[0], name=row[1], parent_id=row[2], head_name=row[3])
            for row in departments.all()
        ),
        ((row[0], row[1]) for row in placements.all()),
    )
