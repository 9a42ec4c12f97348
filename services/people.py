"""People, their memberships and their portals, as the bot reads them."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Exists,
    Integer,
    ScalarSelect,
    Select,
    bindparam,
    case,
    event,
    func,
    null,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, aliased

from domain.rules import Plan, PortalFacts, Role, Roles
from storage.models import Membership, Person, Portal, PortalLink


@dataclass(frozen=True, slots=True)
class MyPortal:
    """A portal as one of its members sees it in their list."""

    id: int
    address: str
    name: str
    plan: Plan
    role: Role
    is_head: bool
    head_id: int | None
    demo_until: datetime | None
    incompatible_until: datetime | None
    ever_in_network: bool
    # Raised by the database on every change to what its structure page shows.
    structure_version: int
    # Linked to its Bitrix24, whose staff and structure it follows.
    is_linked: bool = False

    @property
    def facts(self) -> PortalFacts:
        return PortalFacts(
            id=self.id,
            plan=self.plan,
            is_head=self.is_head,
            head_id=self.head_id,
            demo_until=self.demo_until,
            ever_in_network=self.ever_in_network,
            is_linked=self.is_linked,
            incompatible_until=self.incompatible_until,
        )


def portal_facts(portal: Portal) -> PortalFacts:
    return PortalFacts(
        id=portal.id,
        plan=Plan(portal.plan),
        is_head=portal.is_head,
        head_id=portal.head_id,
        demo_until=portal.demo_until,
        ever_in_network=portal.ever_in_network,
        incompatible_until=portal.incompatible_until,
    )


# The portals of the person an update comes from, loaded with the person in one statement and
# kept for the rest of that update's session. Any write in the session drops the snapshot, so a
# handler that changes memberships or portals reads them afresh.
SNAPSHOT = "branchbot.portals_of"
# A person on at most this many portals gets all of them with the first statement of an update;
# one on more (a head's administrators) gets those the update is about, and the list in pages.
ALL_PORTALS_UP_TO = 10


@dataclass(frozen=True, slots=True)
class PortalsAtHand:
    """Some or all of a person's portals, as one statement brought them back.

    All of them when `complete`; otherwise at least the portal the update is about and the
    current portal, each with its network's head when the person is on the head's staff too.
    """

    person_id: int
    # How many portals the person is on.
    total: int
    portals: tuple[MyPortal, ...]
    # The place in the person's list (`list_order_key`) of the portal the update is about.
    positions: dict[int, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.portals) == self.total

    def get(self, portal_id: int | None) -> MyPortal | None:
        return next((portal for portal in self.portals if portal.id == portal_id), None)

    def covers(self, portal_id: int | None) -> bool:
        """Whether the portal's membership is known: loaded, or surely not among them."""
        return self.complete or self.get(portal_id) is not None


@dataclass(frozen=True, slots=True)
class PortalsPage:
    """One page of a person's portal list, in the order of `list_order_key`."""

    portals: list[MyPortal]
    total: int
    page: int
    pages: int
    # Portals on the page whose network's head is in the person's list too.
    under_their_head: frozenset[int]
    # Whether any portal at all is linked to its Bitrix24, read in the same statement.
    any_portal_linked: bool = False


async def person_by_telegram_id(session: AsyncSession, telegram_id: int) -> Person | None:
    result = await session.execute(select(Person).where(Person.telegram_id == telegram_id))
    return result.scalar_one_or_none()


async def person_and_portals(
    session: AsyncSession, telegram_id: int
) -> tuple[Person | None, list[MyPortal]]:
    """The person linked to a Telegram account and all their portals, in one round trip."""
    result = await session.execute(
        select(Person, Membership.role, Portal)
        .outerjoin(Membership, Membership.person_id == Person.id)
        .outerjoin(Portal, Portal.id == Membership.portal_id)
        .where(Person.telegram_id == telegram_id)
        .order_by(Portal.name, Portal.id)
    )
    rows = result.all()
    if not rows:
        return None, []
    person = rows[0][0]
    portals = [_my_portal(portal, role) for _, role, portal in rows if portal is not None]
    session.info[SNAPSHOT] = PortalsAtHand(person.id, len(portals), tuple(portals))
    return person, portals


async def person_for_update(
    session: AsyncSession,
    telegram_id: int,
    portal_id: int | None = None,
    *,
    with_position: bool = False,
) -> Person | None:
    """The person linked to a Telegram account, with the portals the update needs, at once.

    `portal_id` is the portal the update is about (a tap's), if any; `with_position` counts
    its place in the person's list too. The statement brings as many rows for a head
    administrator of a thousand portals as for anyone else.
    """
    rows = await _portals_at_hand_rows(session, True, telegram_id, portal_id, with_position)
    if not rows:
        return None
    person: Person = rows[0][0]
    session.info[SNAPSHOT] = _at_hand(person.id, rows, portal_id if with_position else None)
    return person


async def portals_at_hand(
    session: AsyncSession,
    person_id: int,
    portal_id: int | None,
    *,
    with_position: bool = False,
) -> PortalsAtHand:
    """The person's portals around `portal_id`: the update's snapshot, or one statement."""
    snapshot = session.info.get(SNAPSHOT)
    if (
        isinstance(snapshot, PortalsAtHand)
        and snapshot.person_id == person_id
        and snapshot.covers(portal_id)
        and (
            not with_position
            or snapshot.complete
            or portal_id is None
            or portal_id in snapshot.positions
        )
    ):
        return snapshot
    rows = await _portals_at_hand_rows(session, False, person_id, portal_id, with_position)
    return _at_hand(person_id, rows, portal_id if with_position else None)


async def _portals_at_hand_rows(
    session: AsyncSession,
    by_telegram_id: bool,
    who: int,
    portal_id: int | None,
    with_position: bool,
) -> Sequence[Any]:
    statement = _portals_at_hand_statement(
        session.get_bind().dialect.name,
        by_telegram_id,
        focused=portal_id is not None,
        with_position=with_position and portal_id is not None,
    )
    values = {"who": who} if portal_id is None else {"who": who, "portal_id": portal_id}
    rows: Sequence[Any] = (await session.execute(statement, values)).all()
    return rows


async def my_portals(session: AsyncSession, person_id: int) -> list[MyPortal]:
    """Every portal the person is a member of, by name."""
    snapshot = session.info.get(SNAPSHOT)
    if (
        isinstance(snapshot, PortalsAtHand)
        and snapshot.person_id == person_id
        and snapshot.complete
    ):
        return list(snapshot.portals)
    result = await session.execute(
        select(Portal, Membership.role)
        .join(Membership, Membership.portal_id == Portal.id)
        .where(Membership.person_id == person_id)
        .order_by(Portal.name, Portal.id)
    )
    return [_my_portal(portal, role) for portal, role in result.all()]


async def portals_page(
    session: AsyncSession, person_id: int, page: int, per_page: int
) -> PortalsPage:
    """One page of the person's portals, networks together; a page past the end gives the last.

    Paged in SQL, so a head administrator's list of a thousand portals costs one page of rows.
    """
    listing = await _portals_page(session, person_id, max(page, 0), per_page)
    if not listing.portals and listing.total:
        listing = await _portals_page(session, person_id, listing.pages - 1, per_page)
    return listing


async def _portals_page(
    session: AsyncSession, person_id: int, page: int, per_page: int
) -> PortalsPage:
    dialect = session.get_bind().dialect.name
    values = {"person_id": person_id, "limit": per_page, "offset": page * per_page}
    # The counts come with each row; a page past the end has no rows and reads them alone.
    rows = (await session.execute(_portals_page_statement(dialect), values)).all()
    if rows:
        count, linked = int(rows[0][3]), bool(rows[0][4])
    else:
        counts = (await session.execute(_portal_counts_statement(), values)).one()
        count, linked = int(counts[0]), bool(counts[1])
    pages = max(1, -(-count // per_page))
    return PortalsPage(
        portals=[_my_portal(portal, role) for portal, role, *_ in rows],
        total=count,
        page=min(page, pages - 1),
        pages=pages,
        under_their_head=frozenset(row[0].id for row in rows if row[2]),
        any_portal_linked=linked,
    )


# The statements below are built once and bound to each call's values: building one costs
# more than SQLite takes to run it.


def _portal_counts() -> tuple[ScalarSelect[int], Exists]:
    """How many portals the person `person_id` is on, and whether any portal is linked."""
    total = (
        select(func.count())
        .select_from(Membership)
        .where(Membership.person_id == bindparam("person_id"))
    ).scalar_subquery()
    return total, select(PortalLink.id).exists()


@cache
def _portal_counts_statement() -> Select[int, bool]:
    total, any_linked = _portal_counts()
    return select(total, any_linked)


@cache
def _portals_page_statement(dialect: str) -> Select[Any]:
    person_id = bindparam("person_id", type_=Integer)
    listed = aliased(Portal)
    chosen = (
        select(Membership.portal_id, Membership.role)
        .join(listed, listed.id == Membership.portal_id)
        .where(Membership.person_id == person_id)
        .order_by(*network_order(listed, dialect))
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery()
    )
    head_membership = aliased(Membership)
    head_listed = (
        select(head_membership.id)
        .where(
            head_membership.person_id == person_id,
            head_membership.portal_id == Portal.head_id,
        )
        .exists()
    )
    return (
        select(Portal, chosen.c.role, head_listed, *_portal_counts())
        .join(chosen, chosen.c.portal_id == Portal.id)
        .order_by(*network_order(Portal, dialect))
    )


def list_order_key(portal: MyPortal) -> tuple[int, int, str, int]:
    """Networks together, each head first, then its branches by name; standalone last."""
    head_id = portal.id if portal.is_head else portal.head_id
    if head_id is None:
        return (1, 0, portal.name.casefold(), portal.id)
    return (0, head_id, "" if portal.is_head else portal.name.casefold(), portal.id)


def position_in_list(at_hand: PortalsAtHand, portal_id: int) -> int | None:
    """The portal's place in the person's list: counted in SQL, or found in a complete one."""
    position = at_hand.positions.get(portal_id)
    if position is None and at_hand.complete:
        ordered = [portal.id for portal in sorted(at_hand.portals, key=list_order_key)]
        position = ordered.index(portal_id) if portal_id in ordered else None
    return position


def folded_name(column: Any, dialect: str) -> ColumnElement[str]:
    """A name without letter case, as `str.casefold` gives it, for ordering in SQL."""
    if dialect == "sqlite":
        # Registered on every SQLite connection (storage/db.py): SQLite's lower() is ASCII only.
        return func.casefold(column, type_=column.type)
    # Limitation: lower() folds a few letters (such as ß) unlike casefold, and on a database
    # whose ctype is C it folds ASCII letters only, so there capitalised Cyrillic names sit
    # elsewhere in the portal list than Python's order puts them; a stored folded name would not.
    return func.lower(column, type_=column.type).collate("C")


def network_order(portal: Any, dialect: str) -> list[ColumnElement[Any]]:
    """`list_order_key` in SQL."""
    return [
        case((portal.is_head | portal.head_id.is_not(None), 0), else_=1),
        case((portal.is_head, portal.id), else_=func.coalesce(portal.head_id, 0)),
        case((portal.is_head, ""), else_=folded_name(portal.name, dialect)),
        portal.id,
    ]


@cache
def _portals_at_hand_statement(
    dialect: str, by_telegram_id: bool, focused: bool, with_position: bool
) -> Select[Any]:
    """The person `who` (a Telegram id, or a person id), one row per portal an update needs.

    All the person's portals when there are few; otherwise the wanted ones first (the current
    portal, and `portal_id` when `focused`), then the heads of their networks, then any, up to
    ALL_PORTALS_UP_TO. The count of every membership, and with `with_position` the place of
    `portal_id` in the person's list, come in the same rows.
    """
    if by_telegram_id:
        which = Person.telegram_id == bindparam("who", type_=BigInteger)
        person_id: Any = select(Person.id).where(which).scalar_subquery()
    else:
        person_id = bindparam("who", type_=Integer)
        which = Person.id == person_id
    focus_id = bindparam("portal_id", type_=Integer)
    current = select(Person.current_portal_id).where(which).scalar_subquery()
    wanted = [focus_id, current] if focused else [current]
    heads = select(Portal.head_id).where(Portal.id.in_(wanted))
    priority = case(
        (Membership.portal_id.in_(wanted), 0),
        (Membership.portal_id.in_(heads), 1),
        else_=2,
    )
    picked = (
        select(
            Membership.portal_id,
            Membership.role,
            func.count().over().label("total"),
        )
        .where(Membership.person_id == person_id)
        .order_by(priority, Membership.portal_id)
        .limit(ALL_PORTALS_UP_TO)
        .subquery()
    )
    position: ColumnElement[Any] = null()
    if with_position:
        focus = aliased(Portal)
        other = aliased(Portal)
        position = (
            select(func.count())
            .select_from(Membership)
            .join(other, other.id == Membership.portal_id)
            .join(focus, focus.id == focus_id)
            .where(
                Membership.person_id == person_id,
                tuple_(*network_order(other, dialect)) < tuple_(*network_order(focus, dialect)),
            )
            .scalar_subquery()
        )
    return (
        select(Person, picked.c.role, picked.c.total, Portal, position.label("position"))
        .select_from(Person)
        .outerjoin(picked, true())
        .outerjoin(Portal, Portal.id == picked.c.portal_id)
        .where(which)
    )


def _at_hand(person_id: int, rows: Sequence[Any], position_of: int | None) -> PortalsAtHand:
    portals = sorted(
        (_my_portal(row[-2], row[-4]) for row in rows if row[-2] is not None),
        key=lambda portal: (portal.name, portal.id),
    )
    total = int(rows[0][-3] or 0) if rows else 0
    positions: dict[int, int] = {}
    if position_of is not None and rows and rows[0][-1] is not None:
        positions[position_of] = int(rows[0][-1])
    return PortalsAtHand(person_id, total, tuple(portals), positions)


def _my_portal(portal: Portal, role: str) -> MyPortal:
    return MyPortal(
        id=portal.id,
        address=portal.address,
        name=portal.name,
        plan=Plan(portal.plan),
        role=Role(role),
        is_head=portal.is_head,
        head_id=portal.head_id,
        demo_until=portal.demo_until,
        incompatible_until=portal.incompatible_until,
        ever_in_network=portal.ever_in_network,
        structure_version=portal.structure_version,
        is_linked=portal.is_linked,
    )


@event.listens_for(Session, "after_flush")
def _forget_snapshot_after_flush(session: Session, _context: Any) -> None:
    if session.new or session.dirty or session.deleted:
        session.info.pop(SNAPSHOT, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_snapshot_on_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info.pop(SNAPSHOT, None)


def roles_of(portals: list[MyPortal]) -> Roles:
    return {portal.id: portal.role for portal in portals}


async def portal_with_role(
    session: AsyncSession, person_id: int, portal_id: int
) -> tuple[Portal, Role | None] | None:
    """The portal and the person's role there (None when not a member), or None if no portal."""
    result = await session.execute(
        select(Portal, Membership.role)
        .outerjoin(
            Membership,
            (Membership.portal_id == Portal.id) & (Membership.person_id == person_id),
        )
        .where(Portal.id == portal_id)
    )
    row = result.one_or_none()
    if row is None:
        return None
    portal, role = row
    return portal, Role(role) if role is not None else None


async def head_roles(session: AsyncSession, person_id: int, head_id: int) -> Role | None:
    result = await session.execute(
        select(Membership.role).where(
            Membership.person_id == person_id, Membership.portal_id == head_id
        )
    )
    role = result.scalar_one_or_none()
    return Role(role) if role is not None else None


def display_name(first_name: str, last_name: str | None) -> str:
    """A person's name as Telegram gives it."""
    return " ".join(part for part in (first_name, last_name) if part).strip() or "—"


async def mark_unreachable(session: AsyncSession, telegram_id: int, now: datetime) -> None:
    """Telegram refused to deliver to this person (blocked, deactivated)."""
    await session.execute(
        update(Person).where(Person.telegram_id == telegram_id).values(blocked_at=now)
    )
