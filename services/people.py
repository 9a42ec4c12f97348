"""People, their memberships and their portals, as the bot reads them."""

from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from domain.rules import Plan, PortalFacts, Role, Roles
from storage.models import Membership, Person, Portal


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


async def person_by_telegram_id(session: AsyncSession, telegram_id: int) -> Person | None:
    result = await session.execute(select(Person).where(Person.telegram_id == telegram_id))
    return result.scalar_one_or_none()


async def person_and_portals(
    session: AsyncSession, telegram_id: int
) -> tuple[Person | None, list[MyPortal]]:
    """The person linked to a Telegram account and their portals, in one round trip."""
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
    session.info[SNAPSHOT] = (person.id, portals)
    return person, portals


async def my_portals(session: AsyncSession, person_id: int) -> list[MyPortal]:
    """Every portal the person is a member of, by name."""
    snapshot = session.info.get(SNAPSHOT)
    if snapshot is not None and snapshot[0] == person_id:
        return list(snapshot[1])
    result = await session.execute(
        select(Portal, Membership.role)
        .join(Membership, Membership.portal_id == Portal.id)
        .where(Membership.person_id == person_id)
        .order_by(Portal.name, Portal.id)
    )
    return [_my_portal(portal, role) for portal, role in result.all()]


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
