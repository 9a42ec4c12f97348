"""A portal's staff list and structure, read in a fixed number of queries whatever its size."""

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    ScalarSelect,
    Select,
    bindparam,
    event,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, aliased

from domain.rules import Role
from domain.structure import DepartmentFacts, StructureTree, tree_from_counts
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
    """A LIKE pattern matching names that contain `text`, whatever its letter case.

    Ё is searched as Е, as Russian is mostly typed: "семен" finds Семёнов, "семён" Семенов.
    """
    folded = text.casefold().replace("ё", "е")
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
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


# The statements are built once and bound to each call's values: building one costs more than
# SQLite takes to run it on a small portal.


def _matching(searching: bool) -> Select[int]:
    """The portal's memberships (`portal_id`), or those whose name contains `pattern`."""
    statement = (
        select(Membership.id)
        .join(Person, Person.id == Membership.person_id)
        .where(Membership.portal_id == bindparam("portal_id"))
    )
    if searching:
        # The search reads every name of the portal anyway; replace() costs little beside it.
        searched = func.replace(Person.name_folded, "ё", "е")
        statement = statement.where(searched.like(bindparam("pattern"), escape="\\"))
    return statement


def _staff_count() -> ScalarSelect[int]:
    """How many are on the staff of `portal_id`, from the portal's index alone."""
    return (
        select(func.count())
        .select_from(Membership)
        .where(Membership.portal_id == bindparam("portal_id"))
        .scalar_subquery()
    )


@cache
def _staff_statement() -> Select[Any]:
    # The page's people are sorted on name and id only, and the rest of their details read for
    # the page's rows alone.
    listed = (
        _matching(False)
        .add_columns(Person.name_folded, Person.id.label("person_id"))
        .order_by(Person.name_folded, Person.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery()
    )
    shown_membership = aliased(Membership)
    shown_person = aliased(Person)
    return (
        select(
            _staff_count().label("total"),
            listed.c.id,
            shown_person.name,
            shown_membership.role,
            shown_membership.position,
            Department.name.label("department"),
        )
        .select_from(listed)
        # Outer joins, though each row has its membership and person, keep the page first in
        # SQLite's plan, sorted once as it streams, rather than stored and joined after.
        .outerjoin(shown_membership, shown_membership.id == listed.c.id)
        .outerjoin(shown_person, shown_person.id == listed.c.person_id)
        .outerjoin(membership_departments, membership_departments.c.membership_id == listed.c.id)
        .outerjoin(Department, Department.id == membership_departments.c.department_id)
        .order_by(listed.c.name_folded, listed.c.person_id, Department.name)
    )


@cache
def _staff_count_statement() -> Select[int]:
    return select(_staff_count())


@cache
def _found_statement() -> Select[Any]:
    listed = (
        _matching(True)
        .add_columns(
            Person.name,
            Person.name_folded,
            Person.id.label("person_id"),
            Membership.role,
            Membership.position,
            # The window count gives the total in the same pass over the matching names.
            func.count().over().label("total"),
        )
        .order_by(Person.name_folded, Person.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery()
    )
    return (
        select(listed, Department.name.label("department"))
        .outerjoin(membership_departments, membership_departments.c.membership_id == listed.c.id)
        .outerjoin(Department, Department.id == membership_departments.c.department_id)
        .order_by(listed.c.name_folded, listed.c.person_id, Department.name)
    )


@cache
def _found_count_statement() -> Select[int]:
    return select(func.count()).select_from(_matching(True).subquery())


async def _staff_rows(
    session: AsyncSession, portal_id: int, page: int, search: str | None, page_size: int
) -> tuple[list[StaffRow], int]:
    """The page's people with their departments and the total, in one statement."""
    values: dict[str, Any] = {
        "portal_id": portal_id,
        "limit": page_size,
        "offset": page * page_size,
    }
    if not search:
        rows = (await session.execute(_staff_statement(), values)).all()
        if rows:
            return _gathered(rows), int(rows[0].total)
        # Only a page past the end has no rows, and needs the total read alone.
        count = await session.execute(_staff_count_statement(), values)
        return [], int(count.scalar_one())

    values["pattern"] = like_pattern(search)
    rows = (await session.execute(_found_statement(), values)).all()
    total = rows[0].total if rows else 0
    if not rows and page > 0:
        count = await session.execute(_found_count_statement(), values)
        total = int(count.scalar_one())
    return _gathered(rows), total


def _gathered(rows: Iterable[Any]) -> list[StaffRow]:
    """One StaffRow per membership from rows of a membership and one of its departments."""
    gathered: dict[int, StaffRow] = {}
    for row in rows:
        staff_row = gathered.get(row.id)
        if staff_row is None:
            staff_row = StaffRow(
                name=row.name, role=Role(row.role), position=row.position, departments=[]
            )
            gathered[row.id] = staff_row
        if row.department is not None:
            staff_row.departments.append(row.department)
    return list(gathered.values())


async def structure(session: AsyncSession, portal_id: int, version: int) -> StructureTree:
    """The whole department tree of a portal: the one drawn lately, or read in one statement.

    `version` is the portal's structure_version as this transaction read it (it comes with the
    person's portals, in the update's first statement). The database raises the number on
    every change to what the tree shows, made anywhere, so a tree drawn at the same number is
    the same tree and costs no statement. A change made in this same transaction may not be
    drawn: on PostgreSQL the number moves only when the transaction commits.

    The placements are counted in SQL: the statement brings a row per department, one per
    department with the number of people placed in it alone, one per placement of the few
    placed in several, and the total. Rows of different shapes come back in one round trip
    through UNION ALL with a kind column, which on SQLite costs more than the query itself.
    """
    key = (str(session.get_bind().engine.url), portal_id)
    drawn = _drawn.get(key)
    if drawn is not None and drawn[0] == version:
        _drawn.move_to_end(key)
        return drawn[1]
    # Limitation: the first tap after any change to the portal's structure, and the first on
    # an instance that has not drawn it lately (DRAWN_TREES_KEPT), read all its placements.
    result = await session.execute(_structure_statement(), {"portal_id": portal_id})
    tree = _tree_of([tuple(row) for row in result])
    # The rows are never older than `version`: it was read before them in this transaction, and
    # a trigger raises it in the same transaction as the change it counts, so any change that
    # the number counts was committed before the rows were read (on PostgreSQL, whose READ
    # COMMITTED gives each statement a newer snapshot) or is in the same snapshot (SQLite).
    # Rows newer than the number are harmless: the next update reads a higher one and misses.
    # They are kept only once this transaction commits, so rows with changes of its own that
    # are then rolled back never stand for a number that another change may reach.
    session.info.setdefault(_DRAWN_AT_COMMIT, {})[key] = (version, tree)
    return tree


@cache
def _structure_statement() -> CompoundSelect[Any]:
    portal_id = bindparam("portal_id", type_=Integer)
    per_membership = (
        select(
            Membership.id.label("membership_id"),
            func.count().label("places"),
            func.min(membership_departments.c.department_id).label("department_id"),
        )
        .join(membership_departments, membership_departments.c.membership_id == Membership.id)
        .where(Membership.portal_id == portal_id)
        # Grouped on the column the portal's index yields in order, so SQLite needs no sort.
        .group_by(Membership.id)
        .cte("per_membership")
    )
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
    alone = (
        select(literal(1), per_membership.c.department_id, func.count(), null(), null())
        .where(per_membership.c.places == 1)
        .group_by(per_membership.c.department_id)
    )
    several = select(per_membership.c.membership_id).where(per_membership.c.places > 1)
    shared = select(
        literal(2),
        membership_departments.c.membership_id,
        membership_departments.c.department_id,
        null(),
        null(),
    ).where(membership_departments.c.membership_id.in_(several))
    staff_total = (
        select(func.count()).select_from(Membership).where(Membership.portal_id == portal_id)
    ).scalar_subquery()
    total = select(literal(3), staff_total, null(), null(), null())
    return union_all(departments, alone, shared, total)


# The trees drawn lately, by database and portal, with the structure version each was drawn
# at, and those read in transactions still open (by session), kept when theirs commits.
DRAWN_TREES_KEPT = 16
_drawn: OrderedDict[tuple[str, int], tuple[int, StructureTree]] = OrderedDict()
_DRAWN_AT_COMMIT = "branchbot.drawn_at_commit"


@event.listens_for(Session, "after_commit")
def _keep_trees_drawn(session: Session) -> None:
    drawn_here: dict[tuple[str, int], tuple[int, StructureTree]] = session.info.pop(
        _DRAWN_AT_COMMIT, {}
    )
    for key, drawn in drawn_here.items():
        _drawn[key] = drawn
        _drawn.move_to_end(key)
    while len(_drawn) > DRAWN_TREES_KEPT:
        _drawn.popitem(last=False)


@event.listens_for(Session, "after_transaction_end")
def _forget_trees_drawn(session: Session, _transaction: SessionTransaction) -> None:
    # After a commit they are kept already; after a rollback, or a savepoint's end, they may
    # hold changes that never were.
    session.info.pop(_DRAWN_AT_COMMIT, None)


def _tree_of(rows: Sequence[tuple[Any, ...]]) -> StructureTree:
    """The tree from the rows of `structure`: (kind, first, second, name, head's name)."""
    # A placement in another portal's department (the schema allows it) places nobody there.
    return tree_from_counts(
        (
            DepartmentFacts(id=first, name=name, parent_id=second, head_name=head_name)
            for kind, first, second, name, head_name in rows
            if kind == 0
        ),
        {first: second for kind, first, second, *_ in rows if kind == 1},
        ((first, second) for kind, first, second, *_ in rows if kind == 2),
        staff_total=next(first for kind, first, *_ in rows if kind == 3),
    )
