"""Reminders before a demo ends and before an incompatible branch is disconnected.

What is owed is worked out from the database alone, every time: the branches whose demo or
grace period ends within the longest lead, the latest reminder that has fallen due for each,
and who has not had it (or a later one) yet. Nothing is kept in memory between runs, so a
restart or a crash changes nothing, a bot that was down across several thresholds owes only the
latest, and a moved end date starts afresh, because the end instant is part of each dedupe key.

The queries are a fixed handful whatever the size of the network. Nothing here commits.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from domain.rules import REMINDER_LEADS, Plan, Role, told_of_branch_event
from services.notices import params_of
from services.outbox import Status
from storage.models import Membership, Notice, Person, Portal

log = logging.getLogger(__name__)

DEMO_REMINDER = "demo_reminder"
DISCONNECT_REMINDER = "disconnect_reminder"
KINDS = (DEMO_REMINDER, DISCONNECT_REMINDER)
LONGEST_LEAD = max(REMINDER_LEADS)
DAY = timedelta(days=1)


class Ending(StrEnum):
    """What comes to an end: a demo, or the grace an incompatible branch has."""

    DEMO = "demo"
    GRACE = "grace"

    @property
    def kind(self) -> str:
        return DEMO_REMINDER if self is Ending.DEMO else DISCONNECT_REMINDER


@dataclass(frozen=True, slots=True)
class Due:
    """The latest reminder that has fallen due for one branch."""

    branch_id: int
    head_id: int
    branch_name: str
    branch_address: str
    ending: Ending
    ends_at: datetime
    lead: timedelta

    @property
    def lead_days(self) -> int:
        return self.lead // DAY


@dataclass(frozen=True, slots=True)
class Owed:
    """One reminder not owed yet to one person."""

    due: Due
    person_id: int
    # A head's admin who is not on the branch's staff opens it from the network's list.
    on_branch_staff: bool


@dataclass(frozen=True, slots=True)
class Planned:
    owed: int
    branches: int


def due_lead(ends_at: datetime, now: datetime) -> timedelta | None:
    """The shortest lead whose instant has come, while the end itself is still ahead."""
    if now >= ends_at:
        return None
    come = [lead for lead in REMINDER_LEADS if ends_at - lead <= now]
    return min(come) if come else None


def dedupe_key(
    ending: Ending, branch_id: int, ends_at: datetime, lead: timedelta, person: int
) -> str:
    """One reminder per person, branch, end instant and lead: a moved end starts afresh."""
    return f"{ending}:{branch_id}:{_utc(ends_at).isoformat()}:{lead // DAY}:{person}"


async def owe_due(session: AsyncSession, now: datetime) -> Planned:
    """Owe every reminder that has fallen due and is not owed yet."""
    owed = await not_owed_yet(session, now)
    branches = len({item.due.branch_id for item in owed})
    if owed:
        # One statement for them all, whatever their number.
        await session.execute(insert(Notice), [_notice(item, now) for item in owed])
        log.info("reminders owed: %s, about %s branches", len(owed), branches)
    return Planned(owed=len(owed), branches=branches)


async def not_owed_yet(session: AsyncSession, now: datetime) -> list[Owed]:
    """The reminders that have fallen due, for each person concerned who has not had them."""
    due = await due_reminders(session, now)
    if not due:
        return []
    admins = await _admins(session, now)
    staff = await _head_admins_on_branch_staff(session, now)
    owed_keys = await _owed_keys(session, now)

    owed: list[Owed] = []
    for item in due:
        on_branch = admins.get(item.branch_id, set())
        recipients = told_of_branch_event(
            sorted(on_branch), sorted(admins.get(item.head_id, set())), None
        )
        for person_id in recipients:
            if _had_this_or_later(owed_keys, item, person_id):
                continue
            member = person_id in on_branch or (item.branch_id, person_id) in staff
            owed.append(Owed(item, person_id, on_branch_staff=member))
    return owed


async def due_reminders(session: AsyncSession, now: datetime) -> list[Due]:
    """For each branch ending within the longest lead, the latest reminder that has come."""
    result = await session.execute(
        select(
            Portal.id,
            Portal.head_id,
            Portal.name,
            Portal.address,
            Portal.demo_until,
            Portal.incompatible_until,
        )
        .where(_ending_soon(now))
        .order_by(Portal.id)
    )
    due: list[Due] = []
    for branch_id, head_id, name, address, demo_until, incompatible_until in result.all():
        ending = Ending.GRACE if incompatible_until is not None else Ending.DEMO
        ends_at = incompatible_until if incompatible_until is not None else demo_until
        assert ends_at is not None and head_id is not None
        lead = due_lead(ends_at, now)
        if lead is not None:
            due.append(Due(branch_id, head_id, name, address, ending, ends_at, lead))
    return due


async def why_obsolete(
    session: AsyncSession, person_id: int, params: dict[str, Any], now: datetime
) -> str | None:
    """Why a reminder owed earlier should not be sent now; None while it still holds."""
    try:
        ending = Ending(params["ending"])
        branch_id = int(params["branch_id"])
        ends_at = datetime.fromisoformat(str(params["ends_at"]))
        lead = timedelta(days=int(params["lead_days"]))
    except (KeyError, ValueError, TypeError):
        return "its details cannot be read"

    # One query: the branch as it is now, and whether the person still administers it or
    # its head.
    administers = exists().where(
        Membership.person_id == person_id,
        Membership.role == Role.ADMIN.value,
        Membership.portal_id.in_([Portal.id, Portal.head_id]),
    )
    branch = (
        await session.execute(
            select(
                Portal.head_id,
                Portal.plan,
                Portal.demo_until,
                Portal.incompatible_until,
                administers.label("administers"),
            ).where(Portal.id == branch_id)
        )
    ).first()
    if branch is None or branch.head_id is None:
        return "the branch has left the network"
    if ending is Ending.DEMO:
        if branch.plan != Plan.FREE.value:
            return "the branch has moved to a commercial plan"
        if branch.incompatible_until is not None:
            return "the demo has ended"
        current_end = branch.demo_until
    else:
        if branch.incompatible_until is None:
            return "the branch is compatible again"
        current_end = branch.incompatible_until
    if current_end is None or current_end != ends_at:
        return "the end date has moved"
    if now >= ends_at:
        return "the end has passed"
    latest = due_lead(ends_at, now)
    if latest is not None and latest < lead:
        return "a later reminder has fallen due"
    if not branch.administers:
        return "no longer an administrator of the branch or its head"
    return None


# The command line's view.


@dataclass(frozen=True, slots=True)
class DueRow:
    """A reminder that has fallen due and is not owed yet: the running bot sends it next."""

    due: Due
    recipients: int


@dataclass(frozen=True, slots=True)
class ReminderRow:
    """A reminder owed to one person, and what became of it."""

    person_name: str
    telegram_id: int | None
    kind: str
    branch_name: str
    branch_address: str
    ends_at: datetime | None
    lead_days: int | None
    status: str
    at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class Report:
    not_owed: list[DueRow]
    counts: dict[str, int]
    # Per status, the latest first, at most the limit asked for.
    rows: dict[str, list[ReminderRow]]


async def report(session: AsyncSession, now: datetime, limit: int = 50) -> Report:
    """What is due, what was sent, who could not be reached."""
    per_branch: dict[Due, int] = {}
    for item in await not_owed_yet(session, now):
        per_branch[item.due] = per_branch.get(item.due, 0) + 1
    not_owed = [DueRow(due, count) for due, count in per_branch.items()]

    counted = await session.execute(
        select(Notice.status, func.count()).where(Notice.kind.in_(KINDS)).group_by(Notice.status)
    )
    counts = {status: count for status, count in counted.all()}
    rows: dict[str, list[ReminderRow]] = {}
    for status in counts:
        result = await session.execute(
            select(Notice, Person)
            .join(Person, Person.id == Notice.person_id)
            .where(Notice.kind.in_(KINDS), Notice.status == status)
            .order_by(Notice.id.desc())
            .limit(limit)
        )
        rows[status] = [_report_row(notice, person) for notice, person in result.all()]
    return Report(not_owed=not_owed, counts=counts, rows=rows)


def _report_row(notice: Notice, person: Person) -> ReminderRow:
    params = params_of(notice)
    ends_at = params.get("ends_at")
    lead_days = params.get("lead_days")
    at = notice.sent_at if notice.status == Status.SENT.value and notice.sent_at else None
    return ReminderRow(
        person_name=person.name,
        telegram_id=person.telegram_id,
        kind=notice.kind,
        branch_name=str(params.get("branch_name") or "?"),
        branch_address=str(params.get("branch_address") or ""),
        ends_at=datetime.fromisoformat(ends_at) if isinstance(ends_at, str) else None,
        lead_days=lead_days if isinstance(lead_days, int) else None,
        status=notice.status,
        at=at or notice.created_at,
        reason=notice.last_error,
    )


# Queries and helpers.


def _ending_soon(now: datetime) -> ColumnElement[bool]:
    """Connected branches whose demo (still free) or grace ends within the longest lead."""
    horizon = now + LONGEST_LEAD
    demo_ending = and_(
        Portal.plan == Plan.FREE.value,
        Portal.incompatible_until.is_(None),
        Portal.demo_until > now,
        Portal.demo_until <= horizon,
    )
    grace_ending = and_(Portal.incompatible_until > now, Portal.incompatible_until <= horizon)
    return and_(Portal.head_id.is_not(None), or_(demo_ending, grace_ending))


async def _admins(session: AsyncSession, now: datetime) -> dict[int, set[int]]:
    """The admins of the branches ending soon and of their heads, by portal."""
    ending = select(Portal.id).where(_ending_soon(now))
    heads = select(Portal.head_id).where(_ending_soon(now))
    result = await session.execute(
        select(Membership.portal_id, Membership.person_id).where(
            Membership.role == Role.ADMIN.value,
            or_(Membership.portal_id.in_(ending), Membership.portal_id.in_(heads)),
        )
    )
    admins: dict[int, set[int]] = {}
    for portal_id, person_id in result.all():
        admins.setdefault(portal_id, set()).add(person_id)
    return admins


async def _head_admins_on_branch_staff(
    session: AsyncSession, now: datetime
) -> set[tuple[int, int]]:
    """(branch, person) for the heads' admins who are also on an ending branch's staff."""
    head_admin = aliased(Membership)
    head_admins = select(head_admin.person_id).where(
        head_admin.role == Role.ADMIN.value,
        head_admin.portal_id.in_(select(Portal.head_id).where(_ending_soon(now))),
    )
    result = await session.execute(
        select(Membership.portal_id, Membership.person_id).where(
            Membership.portal_id.in_(select(Portal.id).where(_ending_soon(now))),
            Membership.person_id.in_(head_admins),
        )
    )
    return {(portal_id, person_id) for portal_id, person_id in result.all()}


async def _owed_keys(session: AsyncSession, now: datetime) -> set[str]:
    """The dedupe keys of reminders owed for ends still ahead.

    Such a reminder was owed when its lead came, so no earlier than the longest lead before
    an end that is still ahead; a day more covers a clock that was set back a little.
    """
    since = now - LONGEST_LEAD - DAY
    result = await session.execute(
        select(Notice.dedupe_key).where(Notice.kind.in_(KINDS), Notice.created_at >= since)
    )
    return set(result.scalars())


def _had_this_or_later(owed_keys: set[str], item: Due, person_id: int) -> bool:
    """Whether this reminder or a later one (a shorter lead) for the same end is owed."""
    return any(
        dedupe_key(item.ending, item.branch_id, item.ends_at, lead, person_id) in owed_keys
        for lead in REMINDER_LEADS
        if lead <= item.lead
    )


def _notice(item: Owed, now: datetime) -> dict[str, Any]:
    """The row services.notices.owe() would write; `not_owed_yet` has ruled out its key."""
    due = item.due
    params = {
        "ending": due.ending.value,
        "branch_id": due.branch_id,
        "head_id": due.head_id,
        "branch_name": due.branch_name,
        "branch_address": due.branch_address,
        "ends_at": _utc(due.ends_at).isoformat(),
        "lead_days": due.lead_days,
        "on_branch_staff": item.on_branch_staff,
    }
    return {
        "person_id": item.person_id,
        "kind": due.ending.kind,
        "params": json.dumps(params, ensure_ascii=False, sort_keys=True),
        "dedupe_key": dedupe_key(due.ending, due.branch_id, due.ends_at, due.lead, item.person_id),
        "status": Status.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "not_before": now,
    }


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
