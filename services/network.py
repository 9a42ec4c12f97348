"""The head company's side of the network, shared by the bot, the command line and the scheduler.

Connecting, creating and disconnecting branches, plan changes recorded from billing, the timed
state changes (a demo's end, a grace running out), staff management and the audit log. Every
function re-reads what it needs and applies the rules of `domain.rules` itself, whatever the
caller showed before; every change is written to the audit log and owes its notices in the same
transaction. Nothing here commits: the caller's unit of work does.

Changes that two people may make at the same moment (two admins confirming one disconnect, a
plan change while a portal is being connected) are conditional UPDATEs whose row count says
whether this call made the change, so each change happens once.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.addresses import AddressError, canonical_address
from domain.rules import (
    DEMO_LENGTH,
    ConnectPlan,
    Plan,
    PlanChange,
    Refusal,
    Role,
    Roles,
    check_connect,
    check_create_branch,
    check_disconnect,
    check_plan_change,
    check_role_change,
    demo_end_incompatible_until,
    is_admin,
    may_list_branches,
    may_manage_staff,
    told_of_branch_event,
)
from services import audit, notices
from services.people import portal_facts
from storage.models import AuditEntry, Department, Membership, Person, Portal

log = logging.getLogger(__name__)

BRANCHES_PAGE_SIZE = 10
MEMBERS_PAGE_SIZE = 10
NAME_LENGTH = 200
COMMAND_LINE = "command line"
BY_HAND = "by hand"
GRACE_EXPIRED = "grace expired"
DEMO_ENDED = "demo ended"
# What a head's admins read in their network's log: the network's own events, and everything
# about the head. A branch's staff changes stay with the branch's admins.
NETWORK_ACTIONS = ("connect", "disconnect", "create", "plan", "incompatible", "compatible")


# What the operations report.


@dataclass(frozen=True, slots=True)
class Connected:
    branch: Portal
    head: Portal
    demo_until: datetime | None
    notified: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A disconnect; `already` when someone else had done it, and this call changed nothing."""

    branch: Portal
    head_id: int
    already: bool = False
    notified: int = 0


@dataclass(frozen=True, slots=True)
class Invalid:
    """A new portal's name or address that cannot be used; `reason` is a stable code."""

    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlanSet:
    """A plan recorded from billing, and what it did to the portal's place in a network."""

    portal: Portal
    old_plan: Plan
    change: PlanChange
    notified: int

    @property
    def changed(self) -> bool:
        change = self.change
        return (
            self.old_plan is not change.plan
            or change.stops_being_head
            or change.becomes_incompatible_until is not None
            or change.becomes_compatible
            or change.ends_demo
        )


class UnknownPortal(LookupError):
    """No portal has the address."""


@dataclass(frozen=True, slots=True)
class BranchRow:
    id: int
    name: str
    address: str
    plan: Plan
    connected_at: datetime | None
    demo_until: datetime | None
    incompatible_until: datetime | None


@dataclass(frozen=True, slots=True)
class BranchPage:
    rows: list[BranchRow]
    total: int
    page: int
    pages: int
    offset: int


@dataclass(frozen=True, slots=True)
class MemberRow:
    person_id: int
    name: str
    role: Role
    linked: bool
    reachable: bool


@dataclass(frozen=True, slots=True)
class MembersPage:
    rows: list[MemberRow]
    total: int
    page: int
    pages: int
    offset: int


class StaffChange(StrEnum):
    REMOVE = "remove"
    MAKE_ADMIN = "make_admin"
    MAKE_EMPLOYEE = "make_employee"
    UNLINK = "unlink"


# Who is who.


async def person_roles(session: AsyncSession, person_id: int) -> Roles:
    """Every membership of the person: the facts all the rules start from."""
    result = await session.execute(
        select(Membership.portal_id, Membership.role).where(Membership.person_id == person_id)
    )
    return {portal_id: Role(role) for portal_id, role in result.all()}


async def admin_ids(session: AsyncSession, portal_id: int) -> list[int]:
    result = await session.execute(
        select(Membership.person_id)
        .where(Membership.portal_id == portal_id, Membership.role == Role.ADMIN.value)
        .order_by(Membership.person_id)
    )
    return list(result.scalars())


async def member_ids(session: AsyncSession, portal_id: int) -> set[int]:
    result = await session.execute(
        select(Membership.person_id).where(Membership.portal_id == portal_id)
    )
    return set(result.scalars())


async def portal_by_address(session: AsyncSession, address: str) -> Portal | None:
    """The portal at an address in any spelling; None also for text that is no address."""
    try:
        host = canonical_address(address)
    except AddressError:
        return None
    result = await session.execute(select(Portal).where(Portal.address == host))
    return result.scalar_one_or_none()


async def heads_of(session: AsyncSession, person_id: int) -> list[Portal]:
    """The heads of networks the person administers, by name."""
    result = await session.execute(
        select(Portal)
        .join(Membership, Membership.portal_id == Portal.id)
        .where(
            Membership.person_id == person_id,
            Membership.role == Role.ADMIN.value,
            Portal.is_head.is_(True),
            Portal.plan == Plan.ENTERPRISE.value,
        )
        .order_by(Portal.name, Portal.id)
    )
    return list(result.scalars())


# Connecting.


async def connect_candidates(
    session: AsyncSession, person_id: int, head: Portal, now: datetime
) -> tuple[list[tuple[Portal, ConnectPlan]], list[tuple[Portal, Refusal]]]:
    """The person's portals that may join the head's network now, and why the others may not.

    Only portals the person is on the staff of are considered, so every reason may be shown.
    """
    roles = await person_roles(session, person_id)
    result = await session.execute(
        select(Portal)
        .where(Portal.id.in_(list(roles)), Portal.id != head.id)
        .order_by(Portal.name, Portal.id)
    )
    joinable: list[tuple[Portal, ConnectPlan]] = []
    refused: list[tuple[Portal, Refusal]] = []
    head_facts = portal_facts(head)
    for portal in result.scalars():
        decision = check_connect(roles, head_facts, portal_facts(portal), now)
        if isinstance(decision, Refusal):
            refused.append((portal, decision))
        else:
            joinable.append((portal, decision))
    return joinable, refused


async def preview_connect(
    session: AsyncSession, *, actor: Person, head: Portal, portal: Portal, now: datetime
) -> ConnectPlan | Refusal:
    """What connecting would do, or why it is refused; changes nothing."""
    roles = await person_roles(session, actor.id)
    return check_connect(roles, portal_facts(head), portal_facts(portal), now)


async def connect(
    session: AsyncSession, *, actor: Person, head: Portal, portal: Portal, now: datetime
) -> Connected | Refusal:
    """Make `portal` a branch of `head`'s network; a free portal starts its 15-day demo."""
    decision = await preview_connect(session, actor=actor, head=head, portal=portal, now=now)
    if isinstance(decision, Refusal):
        shown = None if decision is Refusal.NOT_VISIBLE else portal
        _refused(session, now, actor, "connect", shown, decision, portal_id=portal.id)
        return decision

    # The head must still be an enterprise head, and the portal still alone and as it was
    # checked: otherwise someone changed them in between, and the fresh facts decide.
    was_head = head.is_head
    claimed_head = await session.execute(
        update(Portal)
        .where(
            Portal.id == head.id,
            Portal.plan == Plan.ENTERPRISE.value,
            Portal.head_id.is_(None),
        )
        .values(is_head=True)
        .execution_options(synchronize_session=False)
    )
    joined = 0
    if _rowcount(claimed_head):
        joined = _rowcount(
            await session.execute(
                update(Portal)
                .where(
                    Portal.id == portal.id,
                    Portal.head_id.is_(None),
                    Portal.is_head.is_(False),
                    Portal.plan == portal.plan,
                    Portal.ever_in_network.is_(portal.ever_in_network),
                )
                .values(
                    head_id=head.id,
                    connected_at=now,
                    demo_until=decision.demo_until,
                    ever_in_network=True,
                    incompatible_until=None,
                )
                .execution_options(synchronize_session=False)
            )
        )
    if _rowcount(claimed_head) and not joined and not was_head:
        # An enterprise portal made a head by this call stays standalone when nothing joined.
        branch = aliased(Portal)
        await session.execute(
            update(Portal)
            .where(Portal.id == head.id, ~exists().where(branch.head_id == head.id))
            .values(is_head=False)
            .execution_options(synchronize_session=False)
        )
    await session.refresh(head)
    await session.refresh(portal)
    if not joined:
        fresh = await preview_connect(session, actor=actor, head=head, portal=portal, now=now)
        refusal = fresh if isinstance(fresh, Refusal) else Refusal.ALREADY_IN_NETWORK
        shown = None if refusal is Refusal.NOT_VISIBLE else portal
        _refused(session, now, actor, "connect", shown, refusal, portal_id=portal.id)
        return refusal

    audit.record(
        session,
        at=now,
        actor=actor,
        action="connect",
        portal=portal,
        head=head.address,
        plan=portal.plan,
        demo_until=decision.demo_until,
    )
    notified = await _tell_connected(session, portal, head, actor, now)
    log.info(
        "portal %s connected to %s by person %s (demo until %s)",
        portal.address,
        head.address,
        actor.id,
        decision.demo_until,
    )
    return Connected(branch=portal, head=head, demo_until=decision.demo_until, notified=notified)


async def _tell_connected(
    session: AsyncSession, branch: Portal, head: Portal, actor: Person, now: datetime
) -> int:
    on_head = await member_ids(session, head.id)
    notified = 0
    for person_id in told_of_branch_event(await admin_ids(session, branch.id), [], actor.id):
        notified += await notices.owe(
            session,
            person_id=person_id,
            kind="branch_connected",
            dedupe_key=f"connected:{branch.id}:{now.isoformat()}:{person_id}",
            now=now,
            branch_id=branch.id,
            head_id=head.id,
            on_branch_staff=True,
            branch_name=branch.name,
            branch_address=branch.address,
            # The head's name only for people on its staff: nothing else of it reaches others.
            head_name=head.name if person_id in on_head else None,
            actor_name=actor.name,
            plan=branch.plan,
            demo_until=_iso(branch.demo_until),
        )
    return notified


# Creating a branch.


def clean_name(raw: str) -> str | Invalid:
    """A portal's name as stored: one line, trimmed, at most 200 characters."""
    name = " ".join(raw.split())
    if not name:
        return Invalid("name", "empty")
    if len(name) > NAME_LENGTH:
        return Invalid("name", "too_long")
    return name


async def clean_new_address(session: AsyncSession, raw: str) -> str | Invalid:
    """A new portal's address in canonical form, if it is one and no portal has it yet."""
    try:
        host = canonical_address(raw)
    except AddressError as error:
        return Invalid("address", error.reason)
    taken = await session.execute(select(Portal.id).where(Portal.address == host))
    if taken.first() is not None:
        return Invalid("address", "taken")
    return host


async def may_create_branch(session: AsyncSession, actor: Person, head: Portal) -> Refusal | None:
    return check_create_branch(await person_roles(session, actor.id), portal_facts(head))


async def create_branch(
    session: AsyncSession,
    *,
    actor: Person,
    head: Portal,
    name: str,
    address: str,
    now: datetime,
) -> Portal | Refusal | Invalid:
    """A new free portal, connected to the head's network at once with its 15-day demo.

    Its creator becomes its administrator.
    """
    refusal = await may_create_branch(session, actor, head)
    if refusal is not None:
        _refused(session, now, actor, "create", None, refusal, head=head.address, address=address)
        return refusal
    cleaned_name = clean_name(name)
    if isinstance(cleaned_name, Invalid):
        return cleaned_name
    host = await clean_new_address(session, address)
    if isinstance(host, Invalid):
        return host

    claimed_head = await session.execute(
        update(Portal)
        .where(
            Portal.id == head.id,
            Portal.plan == Plan.ENTERPRISE.value,
            Portal.head_id.is_(None),
        )
        .values(is_head=True)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(head)
    if not _rowcount(claimed_head):
        refusal = await may_create_branch(session, actor, head) or Refusal.HEAD_NOT_ENTERPRISE
        _refused(session, now, actor, "create", None, refusal, head=head.address, address=host)
        return refusal

    # Limitation: two people creating the same address at the same instant make the second
    # transaction fail on the unique address (the person gets the generic apology).
    branch = Portal(
        address=host,
        name=cleaned_name,
        plan=Plan.FREE.value,
        is_head=False,
        head_id=head.id,
        connected_at=now,
        demo_until=now + DEMO_LENGTH,
        ever_in_network=True,
        incompatible_until=None,
        created_at=now,
    )
    session.add(branch)
    await session.flush()
    session.add(
        Membership(person_id=actor.id, portal_id=branch.id, role=Role.ADMIN.value, position=None)
    )
    await session.flush()

    audit.record(
        session,
        at=now,
        actor=actor,
        action="create",
        portal=branch,
        head=head.address,
        name=branch.name,
        plan=branch.plan,
        demo_until=branch.demo_until,
    )
    log.info("portal %s created by person %s and connected to %s", host, actor.id, head.address)
    return branch


# Disconnecting.


async def preview_disconnect(
    session: AsyncSession, *, actor: Person, branch: Portal, head_id: int | None = None
) -> bool | Refusal:
    """True when the person may disconnect the branch from the network `head_id` (its own
    network when None), False when it has left that network already, else why not.

    "Already" is said only to the head's admins and only when the log shows the branch
    leaving their network, so it tells nobody anything they could not see.
    """
    roles = await person_roles(session, actor.id)
    if (
        head_id is not None
        and branch.head_id != head_id
        and is_admin(roles, head_id)
        and await _was_disconnected(session, branch.id, head_id)
    ):
        return False
    refusal = check_disconnect(roles, portal_facts(branch))
    if refusal is not None:
        return refusal
    return head_id is None or branch.head_id == head_id


async def disconnect(
    session: AsyncSession,
    *,
    branch: Portal,
    actor: Person | None,
    now: datetime,
    reason: str,
    head_id: int | None = None,
) -> Disconnected | Refusal:
    """Make a branch standalone again; its admins and the head's admins are told.

    `head_id` is the network the person confirmed for; when the branch has left that network
    since, the answer is "already done". Without an actor this is the automatic disconnect of
    a branch whose grace has run out, and it happens only if it still has.
    """
    network = head_id if head_id is not None else branch.head_id
    if actor is not None:
        allowed = await preview_disconnect(session, actor=actor, branch=branch, head_id=network)
        if isinstance(allowed, Refusal):
            shown = None if allowed is Refusal.NOT_VISIBLE else branch
            _refused(session, now, actor, "disconnect", shown, allowed, portal_id=branch.id)
            return allowed
        if not allowed and network is not None:
            _record_disconnect(session, now, actor, branch, network, "already", reason)
            return Disconnected(branch=branch, head_id=network, already=True)
    if network is None or branch.head_id != network:
        return Disconnected(branch=branch, head_id=network or 0, already=True)

    connected_at = branch.connected_at or now
    statement = update(Portal).where(Portal.id == branch.id, Portal.head_id == network)
    if actor is None:
        statement = statement.where(
            Portal.incompatible_until.is_not(None), Portal.incompatible_until <= now
        )
    changed = _rowcount(
        await session.execute(
            statement.values(
                head_id=None, connected_at=None, demo_until=None, incompatible_until=None
            ).execution_options(synchronize_session=False)
        )
    )
    await session.refresh(branch)
    if not changed:
        if actor is not None:
            _record_disconnect(session, now, actor, branch, network, "already", reason)
        return Disconnected(branch=branch, head_id=network, already=True)

    _record_disconnect(session, now, actor, branch, network, "ok", reason)
    notified = await _tell_disconnected(session, branch, network, actor, connected_at, now)
    log.info(
        "portal %s disconnected from network %s (%s, person %s)",
        branch.address,
        network,
        reason,
        actor.id if actor is not None else None,
    )
    return Disconnected(branch=branch, head_id=network, notified=notified)


async def _was_disconnected(session: AsyncSession, branch_id: int, head_id: int) -> bool:
    """Whether the log shows the branch leaving that network (so a late confirm is "done")."""
    result = await session.execute(
        select(AuditEntry.id)
        .where(
            AuditEntry.action == "disconnect",
            AuditEntry.outcome == "ok",
            AuditEntry.portal_id == branch_id,
            AuditEntry.network_head_id == head_id,
        )
        .limit(1)
    )
    return result.first() is not None


def _record_disconnect(
    session: AsyncSession,
    now: datetime,
    actor: Person | None,
    branch: Portal,
    head_id: int,
    outcome: str,
    reason: str,
) -> None:
    entry = audit.record(
        session,
        at=now,
        actor=actor,
        action="disconnect",
        portal=branch,
        outcome=outcome,
        reason=reason,
    )
    # The branch has left by now; the entry stays in the log of the network it left.
    entry.network_head_id = head_id


async def _tell_disconnected(
    session: AsyncSession,
    branch: Portal,
    head_id: int,
    actor: Person | None,
    connected_at: datetime,
    now: datetime,
) -> int:
    head = await session.get(Portal, head_id)
    on_head = await member_ids(session, head_id)
    on_branch = await member_ids(session, branch.id)
    recipients = told_of_branch_event(
        await admin_ids(session, branch.id),
        await admin_ids(session, head_id),
        actor.id if actor is not None else None,
    )
    notified = 0
    for person_id in recipients:
        # Only what the recipient may see: the head, and who acted, if they share a portal.
        sees_actor = actor is not None and (person_id in on_head or actor.id in on_branch)
        notified += await notices.owe(
            session,
            person_id=person_id,
            kind="branch_disconnected",
            dedupe_key=f"disconnected:{branch.id}:{connected_at.isoformat()}:{person_id}",
            now=now,
            branch_id=branch.id,
            head_id=head_id,
            branch_name=branch.name,
            branch_address=branch.address,
            head_name=head.name if head is not None and person_id in on_head else None,
            actor_name=actor.name if actor is not None and sees_actor else None,
            automatic=actor is None,
        )
    return notified


# Timed state changes, for the scheduler.


async def expire_demos(session: AsyncSession, now: datetime) -> list[int]:
    """Free branches whose demo has ended become incompatible; returns their ids."""
    result = await session.execute(
        select(Portal).where(
            Portal.head_id.is_not(None),
            Portal.plan == Plan.FREE.value,
            Portal.demo_until.is_not(None),
            Portal.demo_until <= now,
            Portal.incompatible_until.is_(None),
        )
    )
    changed: list[int] = []
    for branch in result.scalars().all():
        until = demo_end_incompatible_until(portal_facts(branch), now)
        if until is None:
            continue
        marked = await session.execute(
            update(Portal)
            .where(
                Portal.id == branch.id,
                Portal.head_id == branch.head_id,
                Portal.plan == Plan.FREE.value,
                Portal.demo_until == branch.demo_until,
                Portal.incompatible_until.is_(None),
            )
            .values(incompatible_until=until)
            .execution_options(synchronize_session=False)
        )
        if not _rowcount(marked):
            continue
        await session.refresh(branch)
        audit.record(
            session,
            at=now,
            actor=None,
            action="incompatible",
            portal=branch,
            reason=DEMO_ENDED,
            incompatible_until=until,
        )
        # Past its grace already (the scheduler was down that long): the disconnect notice
        # that follows at once says all there is to say.
        if until > now:
            await _tell_incompatible(session, branch, until, DEMO_ENDED, now)
        log.info("portal %s: demo ended, incompatible until %s", branch.address, until)
        changed.append(branch.id)
    return changed


async def expire_grace(session: AsyncSession, now: datetime) -> list[int]:
    """Branches whose grace has run out are disconnected; returns their ids."""
    result = await session.execute(
        select(Portal).where(
            Portal.head_id.is_not(None),
            Portal.incompatible_until.is_not(None),
            Portal.incompatible_until <= now,
        )
    )
    disconnected: list[int] = []
    for branch in result.scalars().all():
        outcome = await disconnect(
            session, branch=branch, actor=None, now=now, reason=GRACE_EXPIRED
        )
        if isinstance(outcome, Disconnected) and not outcome.already:
            disconnected.append(branch.id)
    return disconnected


async def _tell_incompatible(
    session: AsyncSession, branch: Portal, until: datetime, reason: str, now: datetime
) -> int:
    assert branch.head_id is not None
    notified = 0
    on_branch = await member_ids(session, branch.id)
    recipients = told_of_branch_event(
        await admin_ids(session, branch.id), await admin_ids(session, branch.head_id), None
    )
    for person_id in recipients:
        notified += await notices.owe(
            session,
            person_id=person_id,
            kind="branch_incompatible",
            dedupe_key=f"incompatible:{branch.id}:{until.isoformat()}:{person_id}",
            now=now,
            branch_id=branch.id,
            head_id=branch.head_id,
            on_branch_staff=person_id in on_branch,
            branch_name=branch.name,
            branch_address=branch.address,
            incompatible_until=until.isoformat(),
            reason=reason,
        )
    return notified


async def _tell_compatible(session: AsyncSession, branch: Portal, now: datetime) -> int:
    assert branch.head_id is not None
    notified = 0
    on_branch = await member_ids(session, branch.id)
    recipients = told_of_branch_event(
        await admin_ids(session, branch.id), await admin_ids(session, branch.head_id), None
    )
    for person_id in recipients:
        notified += await notices.owe(
            session,
            person_id=person_id,
            kind="branch_compatible",
            dedupe_key=f"compatible:{branch.id}:{now.isoformat()}:{person_id}",
            now=now,
            branch_id=branch.id,
            head_id=branch.head_id,
            on_branch_staff=person_id in on_branch,
            branch_name=branch.name,
            branch_address=branch.address,
            plan=branch.plan,
        )
    return notified


async def why_incompatible_obsolete(
    session: AsyncSession, person_id: int, params: dict[str, Any], now: datetime
) -> str | None:
    """Why an "incompatible" notice owed earlier should not be sent now; None while it holds."""
    try:
        branch_id = int(params["branch_id"])
        until = datetime.fromisoformat(str(params["incompatible_until"]))
    except (KeyError, TypeError, ValueError):
        return None
    branch = (
        await session.execute(
            select(Portal.head_id, Portal.incompatible_until).where(Portal.id == branch_id)
        )
    ).first()
    if branch is None or branch.head_id is None:
        return "the branch has left the network"
    if branch.incompatible_until != until:
        return "the branch is compatible again"
    return None


# Plans, recorded from billing.


async def set_plan(
    session: AsyncSession, address: str, plan: Plan, now: datetime
) -> PlanSet | Refusal:
    """Record a portal's new plan and apply the plan rules of heads and branches.

    Raises AddressError for text that is no address and UnknownPortal when no portal has it.
    """
    host = canonical_address(address)
    # A conflicting change in between (a branch connected to this head, say) makes the guarded
    # UPDATE match nothing; the rules are then applied again to the fresh facts.
    for _attempt in range(3):
        portal = (
            await session.execute(
                select(Portal)
                .where(Portal.address == host)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if portal is None:
            raise UnknownPortal(host)
        old_plan = Plan(portal.plan)
        has_branches = await _has_branches(session, portal.id)
        change = check_plan_change(portal_facts(portal), plan, has_branches, now)
        if isinstance(change, Refusal):
            _plan_entry(session, now, portal, old_plan, plan, "refused", reason=change.value)
            return change

        applied = await _apply_plan(session, portal, old_plan, change)
        if applied:
            break
    else:
        raise RuntimeError(f"the plan of {host} kept changing while it was being set")

    await session.refresh(portal)
    result = PlanSet(portal=portal, old_plan=old_plan, change=change, notified=0)
    if not result.changed:
        _plan_entry(session, now, portal, old_plan, plan, "unchanged")
        return result

    _plan_entry(
        session,
        now,
        portal,
        old_plan,
        plan,
        "ok",
        stops_being_head=change.stops_being_head,
        incompatible_until=change.becomes_incompatible_until,
        compatible_again=change.becomes_compatible,
        demo_ended=change.ends_demo,
    )
    notified = 0
    if change.becomes_incompatible_until is not None:
        notified = await _tell_incompatible(
            session, portal, change.becomes_incompatible_until, "plan", now
        )
    elif change.becomes_compatible:
        notified = await _tell_compatible(session, portal, now)
    log.info(
        "portal %s moved from %s to %s (head: %s, incompatible until %s, compatible: %s)",
        portal.address,
        old_plan.value,
        plan.value,
        portal.is_head,
        portal.incompatible_until,
        change.becomes_compatible,
    )
    return PlanSet(portal=portal, old_plan=old_plan, change=change, notified=notified)


async def _has_branches(session: AsyncSession, head_id: int) -> bool:
    result = await session.execute(select(Portal.id).where(Portal.head_id == head_id).limit(1))
    return result.first() is not None


async def _apply_plan(
    session: AsyncSession, portal: Portal, old_plan: Plan, change: PlanChange
) -> bool:
    values: dict[str, Any] = {"plan": change.plan.value}
    if change.stops_being_head:
        values["is_head"] = False
    if change.becomes_incompatible_until is not None:
        values["incompatible_until"] = change.becomes_incompatible_until
    elif change.becomes_compatible:
        values["incompatible_until"] = None
    if change.ends_demo:
        values["demo_until"] = None

    statement = update(Portal).where(
        Portal.id == portal.id,
        Portal.plan == old_plan.value,
        Portal.is_head.is_(portal.is_head),
        _same(Portal.head_id, portal.head_id),
    )
    if portal.is_head and change.plan is not Plan.ENTERPRISE:
        branch = aliased(Portal)
        statement = statement.where(~exists().where(branch.head_id == portal.id))
    # Limitation: on PostgreSQL the guard above does not see a connect that commits between
    # its snapshot and this statement; SQLite runs writers one at a time, so it cannot happen.
    result = await session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return bool(_rowcount(result))


def _plan_entry(
    session: AsyncSession,
    now: datetime,
    portal: Portal,
    old_plan: Plan,
    new_plan: Plan,
    outcome: str,
    **details: Any,
) -> None:
    audit.record(
        session,
        at=now,
        actor=None,
        actor_text=COMMAND_LINE,
        action="plan",
        portal=portal,
        outcome=outcome,
        old=old_plan.value,
        new=new_plan.value,
        **details,
    )


# Listing a network.


async def list_branches(
    session: AsyncSession, head_id: int, page: int, page_size: int = BRANCHES_PAGE_SIZE
) -> BranchPage:
    """One page of a network's branches, by name; a page past the end gives the last one."""
    total = int(
        (
            await session.execute(
                select(func.count()).select_from(Portal).where(Portal.head_id == head_id)
            )
        ).scalar_one()
    )
    pages = max(1, -(-total // page_size))
    page = min(max(page, 0), pages - 1)
    result = await session.execute(
        select(Portal)
        .where(Portal.head_id == head_id)
        .order_by(Portal.name, Portal.id)
        .limit(page_size)
        .offset(page * page_size)
    )
    rows = [branch_row(portal) for portal in result.scalars()]
    return BranchPage(rows=rows, total=total, page=page, pages=pages, offset=page * page_size)


def branch_row(portal: Portal) -> BranchRow:
    return BranchRow(
        id=portal.id,
        name=portal.name,
        address=portal.address,
        plan=Plan(portal.plan),
        connected_at=portal.connected_at,
        demo_until=portal.demo_until,
        incompatible_until=portal.incompatible_until,
    )


async def may_list(session: AsyncSession, person: Person | None, head: Portal) -> Refusal | None:
    """Whether the person may see the network's branches (and its log)."""
    if person is None:
        return Refusal.NOT_VISIBLE
    return may_list_branches(await person_roles(session, person.id), portal_facts(head))


async def network_audit(session: AsyncSession, head_id: int, limit: int = 20) -> list[AuditEntry]:
    """The network's latest entries, newest first, as its head's admins may read them."""
    result = await session.execute(
        select(AuditEntry)
        .where(
            or_(
                AuditEntry.portal_id == head_id,
                and_(
                    AuditEntry.network_head_id == head_id,
                    AuditEntry.action.in_(NETWORK_ACTIONS),
                    # Refused attempts on a branch name its staff, who may not be the head's.
                    AuditEntry.outcome != "refused",
                ),
            )
        )
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
    )
    return list(result.scalars())


async def audit_entries(
    session: AsyncSession, *, portal_address: str | None = None, limit: int = 50
) -> list[AuditEntry]:
    """The latest entries, newest first; with an address, only that portal's.

    Raises AddressError for an address that is no address.
    """
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if portal_address is not None:
        statement = statement.where(AuditEntry.portal_address == canonical_address(portal_address))
    result = await session.execute(statement.limit(limit))
    return list(result.scalars())


# Staff management by a portal's admins.


async def members_page(
    session: AsyncSession, portal_id: int, page: int, page_size: int = MEMBERS_PAGE_SIZE
) -> MembersPage:
    """One page of a portal's people, by name, with what an admin needs to manage them."""
    total = int(
        (
            await session.execute(
                select(func.count())
                .select_from(Membership)
                .where(Membership.portal_id == portal_id)
            )
        ).scalar_one()
    )
    pages = max(1, -(-total // page_size))
    page = min(max(page, 0), pages - 1)
    result = await session.execute(
        select(Person, Membership.role)
        .join(Membership, Membership.person_id == Person.id)
        .where(Membership.portal_id == portal_id)
        .order_by(Person.name_folded, Person.id)
        .limit(page_size)
        .offset(page * page_size)
    )
    rows = [_member_row(person, role) for person, role in result.all()]
    return MembersPage(rows=rows, total=total, page=page, pages=pages, offset=page * page_size)


async def member_card(session: AsyncSession, portal_id: int, person_id: int) -> MemberRow | None:
    """One person of the portal's staff; None when they are not on it."""
    result = await session.execute(
        select(Person, Membership.role)
        .join(Membership, Membership.person_id == Person.id)
        .where(Membership.portal_id == portal_id, Membership.person_id == person_id)
    )
    row = result.one_or_none()
    return None if row is None else _member_row(row[0], row[1])


def _member_row(person: Person, role: str) -> MemberRow:
    return MemberRow(
        person_id=person.id,
        name=person.name,
        role=Role(role),
        linked=person.telegram_id is not None,
        reachable=person.telegram_id is not None
        and person.started_at is not None
        and person.blocked_at is None,
    )


async def may_manage(
    session: AsyncSession, actor: Person | None, portal_id: int
) -> Refusal | None:
    if actor is None:
        return Refusal.NOT_VISIBLE
    return may_manage_staff(await person_roles(session, actor.id), portal_id)


async def remove_member(
    session: AsyncSession, *, actor: Person, portal: Portal, person_id: int, now: datetime
) -> bool | Refusal:
    """Take a person off the portal's staff; they lose access to it on their next tap."""
    return await _change_staff(session, actor, portal, person_id, StaffChange.REMOVE, now)


async def set_role(
    session: AsyncSession,
    *,
    actor: Person,
    portal: Portal,
    person_id: int,
    role: Role,
    now: datetime,
) -> bool | Refusal:
    """Make a person an admin or an employee; False when they already are one."""
    change = StaffChange.MAKE_ADMIN if role is Role.ADMIN else StaffChange.MAKE_EMPLOYEE
    return await _change_staff(session, actor, portal, person_id, change, now)


async def unlink_account(
    session: AsyncSession, *, actor: Person, portal: Portal, person_id: int, now: datetime
) -> bool | Refusal:
    """Take a person's Telegram account away from their record; False when none was linked.

    They stay on the staff, and can no longer use the bot until they link again.
    """
    # Limitation: the link belongs to the person, so unlinking takes the bot away from them on
    # every portal they are on, not only on the admin's.
    return await _change_staff(session, actor, portal, person_id, StaffChange.UNLINK, now)


async def _change_staff(
    session: AsyncSession,
    actor: Person,
    portal: Portal,
    person_id: int,
    change: StaffChange,
    now: datetime,
) -> bool | Refusal:
    refusal = await may_manage(session, actor, portal.id)
    if refusal is None:
        membership = (
            await session.execute(
                select(Membership).where(
                    Membership.portal_id == portal.id, Membership.person_id == person_id
                )
            )
        ).scalar_one_or_none()
        if membership is None:
            refusal = Refusal.NOT_A_MEMBER
    if refusal is None and change is not StaffChange.UNLINK:
        new_role = {
            StaffChange.REMOVE: None,
            StaffChange.MAKE_ADMIN: Role.ADMIN,
            StaffChange.MAKE_EMPLOYEE: Role.EMPLOYEE,
        }[change]
        refusal = check_role_change(await admin_ids(session, portal.id), person_id, new_role)
    if refusal is not None:
        shown = None if refusal is Refusal.NOT_VISIBLE else portal
        _refused(session, now, actor, change.value, shown, refusal, person_id=person_id)
        return refusal

    target = await session.get(Person, person_id)
    assert target is not None
    if change is StaffChange.REMOVE:
        done = await _remove(session, portal.id, person_id)
    elif change is StaffChange.UNLINK:
        done = await _unlink(session, person_id)
    else:
        role = Role.ADMIN if change is StaffChange.MAKE_ADMIN else Role.EMPLOYEE
        done = await _set_role(session, portal.id, person_id, role)
    if done is None:
        # Another admin's change in between left this one as the portal's last admin.
        _refused(
            session, now, actor, change.value, portal, Refusal.LAST_ADMIN, person_id=person_id
        )
        return Refusal.LAST_ADMIN

    audit.record(
        session,
        at=now,
        actor=actor,
        action=change.value,
        portal=portal,
        outcome="ok" if done else "unchanged",
        person_id=person_id,
        person=target.name,
    )
    if done:
        log.info(
            "portal %s: %s of person %s by person %s", portal.address, change, person_id, actor.id
        )
    return done


async def _lock_admins(session: AsyncSession, portal_id: int) -> None:
    """Hold the portal's admin memberships until commit, before a change that may drop one.

    On PostgreSQL two such changes would otherwise each see the other admin still there and
    both go through; locked, the later one waits and then sees the earlier one's change. On
    SQLite there is one writer at a time already (and FOR UPDATE is not rendered).
    """
    await session.execute(
        select(Membership.id)
        .where(Membership.portal_id == portal_id, Membership.role == Role.ADMIN.value)
        .order_by(Membership.id)
        .with_for_update()
    )


def _keeps_an_admin(portal_id: int, membership_id: int) -> Any:
    """SQL: the portal has an admin other than this membership."""
    other = aliased(Membership)
    return exists().where(
        other.portal_id == portal_id,
        other.role == Role.ADMIN.value,
        other.id != membership_id,
    )


async def _membership_id(session: AsyncSession, portal_id: int, person_id: int) -> int | None:
    result = await session.execute(
        select(Membership.id).where(
            Membership.portal_id == portal_id, Membership.person_id == person_id
        )
    )
    return result.scalar_one_or_none()


async def _remove(session: AsyncSession, portal_id: int, person_id: int) -> bool | None:
    """True when removed, False when already gone, None when it would leave no admin."""
    await _lock_admins(session, portal_id)
    membership_id = await _membership_id(session, portal_id, person_id)
    if membership_id is None:
        return False
    removed = await session.execute(
        delete(Membership)
        .where(
            Membership.id == membership_id,
            or_(Membership.role != Role.ADMIN.value, _keeps_an_admin(portal_id, membership_id)),
        )
        .execution_options(synchronize_session=False)
    )
    if not _rowcount(removed):
        return None if await _membership_id(session, portal_id, person_id) else False

    # A department's head must be on its portal's staff; the portal stops being current.
    await session.execute(
        update(Department)
        .where(Department.portal_id == portal_id, Department.head_person_id == person_id)
        .values(head_person_id=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Person)
        .where(Person.id == person_id, Person.current_portal_id == portal_id)
        .values(current_portal_id=None)
        .execution_options(synchronize_session=False)
    )
    await _refresh_if_loaded(session, person_id)
    return True


async def _set_role(
    session: AsyncSession, portal_id: int, person_id: int, role: Role
) -> bool | None:
    """True when changed, False when already so, None when it would leave no admin."""
    if role is not Role.ADMIN:
        await _lock_admins(session, portal_id)
    membership_id = await _membership_id(session, portal_id, person_id)
    if membership_id is None:
        return False
    statement = update(Membership).where(
        Membership.id == membership_id, Membership.role != role.value
    )
    if role is not Role.ADMIN:
        statement = statement.where(_keeps_an_admin(portal_id, membership_id))
    changed = await session.execute(
        statement.values(role=role.value).execution_options(synchronize_session=False)
    )
    if _rowcount(changed):
        return True
    current = await session.execute(select(Membership.role).where(Membership.id == membership_id))
    return False if current.scalar_one_or_none() == role.value else None


async def _unlink(session: AsyncSession, person_id: int) -> bool:
    unlinked = await session.execute(
        update(Person)
        .where(Person.id == person_id, Person.telegram_id.is_not(None))
        .values(
            telegram_id=None,
            username=None,
            telegram_language=None,
            started_at=None,
            blocked_at=None,
            current_portal_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    await _refresh_if_loaded(session, person_id)
    return bool(_rowcount(unlinked))


async def _refresh_if_loaded(session: AsyncSession, person_id: int) -> None:
    """Bring a person already in the session in step with an UPDATE made around the ORM."""
    person = await session.get(Person, person_id)
    if person is not None:
        await session.refresh(person)


# Shared helpers.


def _refused(
    session: AsyncSession,
    now: datetime,
    actor: Person | None,
    action: str,
    portal: Portal | None,
    refusal: Refusal,
    **details: Any,
) -> None:
    """A refusal in the log; a portal the actor may not see is named by id only."""
    audit.record(
        session,
        at=now,
        actor=actor,
        action=action,
        portal=portal,
        outcome="refused",
        reason=refusal.value,
        **details,
    )


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _same(column: Any, value: int | None) -> Any:
    return column.is_(None) if value is None else column == value


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
