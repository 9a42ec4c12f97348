"""A portal's staff list and structure, read in a fixed number of queries whatever its size."""

from dataclasses import dataclass

from sqlalchemy import Select, func, literal, null, select, union_all
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
    return StaffPage(
        rows=rows,
        total=total,
        page=min(page, pages - 1),
        pages=pages,
        offset=min(page, pages - 1) * page_size,
    )


def _matching(portal_id: int, search: str | None) -> Select[int]:
    statement = (
        select(Membership.id)
        .join(Person, Person.id == Membership.person_id)
        .where(Membership.portal_id == portal_id)
    )
    if search:
        statement = statement.where(Person.name_folded.like(like_pattern(search), escape="\\"))
    return statement


async def _staff_rows(
    session: AsyncSession, portal_id: int, page: int, search: str | None, page_size: int
) -> tuple[list[StaffRow], int]:
    """The page's people with their departments and the total, in one statement."""
    listed = (
        _matching(portal_id, search)
        .add_columns(
            Person.name,
            Person.name_folded,
            Person.id.label("person_id"),
            Membership.role,
            Membership.position,
            # The window count gives the total in the same round trip as the page.
            func.count().over().label("total"),
        )
        .order_by(Person.name_folded, Person.id)
        .limit(page_size)
        .offset(page * page_size)
        .subquery()
    )
    result = await session.execute(
        select(listed, Department.name.label("department"))
        .outerjoin(membership_departments, membership_departments.c.membership_id == listed.c.id)
        .outerjoin(Department, Department.id == membership_departments.c.department_id)
        .order_by(listed.c.name_folded, listed.c.person_id, Department.name)
    )

    rows: dict[int, StaffRow] = {}
    total = 0
    for row in result.all():
        total = row.total
        staff_row = rows.get(row.id)
        if staff_row is None:
            staff_row = StaffRow(
                name=row.name, role=Role(row.role), position=row.position, departments=[]
            )
            rows[row.id] = staff_row
        if row.department is not None:
            staff_row.departments.append(row.department)
    if not rows and page > 0:
        count = select(func.count()).select_from(_matching(portal_id, search).subquery())
        total = int((await session.execute(count)).scalar_one())
    return list(rows.values()), total


async def structure(session: AsyncSession, portal_id: int) -> StructureTree:
    """The whole department tree of a portal, in one statement.

    Departments and placements have different shapes; UNION ALL with a kind column brings both
    back in one round trip, which on SQLite costs more than the query itself.
    """
    departments = (
        select(
            literal(0).label("kind"),
            Department.id.label("first"),
            Department.parent_id.label("second"),
            Department.name.label("name"),
            Person.name.label("head_name"),
        )
        .outerjoin(Person, Person.id == Department.head_person_id)
        .where(Department.portal_id == portal_id)
    )
    placements = (
        select(
            literal(1).label("kind"),
            Membership.id.label("first"),
            membership_departments.c.department_id.label("second"),
            null().label("name"),
            null().label("head_name"),
        )
        .outerjoin(
            membership_departments,
            membership_departments.c.membership_id == Membership.id,
        )
        .where(Membership.portal_id == portal_id)
    )
    rows = (await session.execute(union_all(departments, placements))).all()
    return build_tree(
        (
            DepartmentFacts(
                id=row.first, name=row.name, parent_id=row.second, head_name=row.head_name
            )
            for row in rows
            if row.kind == 0
        ),
        ((row.first, row.second) for row in rows if row.kind == 1),
    )
