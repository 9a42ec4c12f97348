"""Keeping a linked portal's staff and structure in step with its Bitrix24.

A sync reads the whole portal first, outside any transaction, then applies it in one: either
everything the read found is written, or (the read failed, or its answer does not hold
together) nothing is, and the link is marked failing with the reason. The portal's admins are
told when a run of failures starts and when it ends, never once an hour in between.

What a sync decides and what it leaves alone:

- Departments of a linked portal are exactly its Bitrix24 departments, with their parents and
  heads; any other department of the portal (from the network file, say) is removed.
- Synced staff are recognised by their Bitrix24 id on the portal, then by email. People who
  left Bitrix24 (fired, or gone from the answer) lose their membership; the person stays, and
  so does the audit log.
- A person's Telegram link, language, role and current portal are never written by a sync,
  except that a membership that ends stops being current. Staff the bot added itself (through
  invites) are not on Bitrix24's list and stay.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.rules import Role
from services import audit
from services import notices as outbox
from services.bitrix import (
    MAX_BATCH_COMMANDS,
    BitrixError,
    ClientFactory,
    FailureKind,
    FastBitrixClient,
    PortalSnapshot,
    Progress,
    RemoteEmployee,
    Webhook,
    limits_for_plan,
    parse_webhook,
    read_portal,
)
from services.clock import Clock, utc_now
from storage.models import (
    Department,
    Invite,
    Membership,
    MembershipPhone,
    Person,
    Portal,
    PortalLink,
    membership_departments,
)

log = logging.getLogger(__name__)

LINK_ACTION: Final = "bitrix_link"
UNLINK_ACTION: Final = "bitrix_unlink"
SYNC_ACTION: Final = "bitrix_sync"
FAILED_NOTICE: Final = "bitrix_sync_failed"
RECOVERED_NOTICE: Final = "bitrix_sync_recovered"

NEW: Final = "new"
OK: Final = "ok"
FAILING: Final = "failing"

# Well under the bound-parameter limits of SQLite and PostgreSQL.
CHUNK: Final = 2000
DEPARTMENT_KEY_PREFIX: Final = "b24-"

T = TypeVar("T")


class Trigger(StrEnum):
    """What started a sync, as the audit log names it."""

    SCHEDULE = "schedule"
    LINK = "link"
    BOT = "bot"
    COMMAND_LINE = "command line"


class NotLinked(Exception):
    """The portal has no Bitrix24 link (any more)."""


@dataclass(frozen=True, slots=True)
class SyncChanges:
    """What one sync changed, per kind of row."""

    people_added: int = 0
    people_updated: int = 0
    people_left: int = 0
    departments_added: int = 0
    departments_updated: int = 0
    departments_removed: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.people_added,
                self.people_updated,
                self.people_left,
                self.departments_added,
                self.departments_updated,
                self.departments_removed,
            )
        )

    def as_details(self) -> dict[str, int]:
        return {
            "people_added": self.people_added,
            "people_updated": self.people_updated,
            "people_left": self.people_left,
            "departments_added": self.departments_added,
            "departments_updated": self.departments_updated,
            "departments_removed": self.departments_removed,
        }


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """How a sync ended: its changes, or the failure that kept the previous data."""

    portal_id: int
    portal_name: str
    portal_address: str
    requests: int
    changes: SyncChanges | None = None
    failure: BitrixError | None = None
    staff: int = 0
    departments: int = 0
    # The first sync after a run of failures.
    recovered: bool = False
    # The first failure of a run: the admins were told.
    failing_from_now: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None


class SnapshotError(Exception):
    """The portal's answer does not hold together (a department is its own ancestor, say)."""


# Linking.


async def link_portal(
    session: AsyncSession,
    portal: Portal,
    webhook: Webhook,
    *,
    actor: Person | None,
    now: datetime,
    actor_text: str | None = None,
) -> PortalLink:
    """Link the portal to its Bitrix24 through the webhook; a new webhook replaces the old."""
    link = await _link_of(session, portal.id)
    replaced = link is not None
    if link is None:
        link = PortalLink(portal_id=portal.id, linked_at=now)
        session.add(link)
    link.webhook_url = webhook.url
    link.status = NEW
    link.failure_reason = None
    link.failing_since = None
    link.linked_at = now
    link.linked_by_id = actor.id if actor is not None else None
    audit.record(
        session,
        at=now,
        actor=actor,
        actor_text=actor_text,
        action=LINK_ACTION,
        portal=portal,
        webhook=webhook.masked,
        replaced=replaced,
    )
    await session.flush()
    log.info("portal %s linked to Bitrix24 through %s", portal.address, webhook.masked)
    return link


async def unlink_portal(
    session: AsyncSession,
    portal: Portal,
    *,
    actor: Person | None,
    now: datetime,
    actor_text: str | None = None,
) -> bool:
    """Forget the webhook; the staff and structure stay as the last sync left them."""
    link = await _link_of(session, portal.id)
    if link is None:
        return False
    await session.delete(link)
    audit.record(
        session, at=now, actor=actor, actor_text=actor_text, action=UNLINK_ACTION, portal=portal
    )
    log.info("portal %s unlinked from Bitrix24", portal.address)
    return True


async def _link_of(session: AsyncSession, portal_id: int) -> PortalLink | None:
    result = await session.execute(select(PortalLink).where(PortalLink.portal_id == portal_id))
    return result.scalar_one_or_none()


async def link_status(session: AsyncSession, portal_id: int) -> PortalLink | None:
    """The portal's link, for showing its state (never its URL)."""
    return await _link_of(session, portal_id)


async def any_portal_linked(session: AsyncSession) -> bool:
    result = await session.execute(select(PortalLink.id).limit(1))
    return result.first() is not None


async def linked_portal_ids(session: AsyncSession) -> list[int]:
    result = await session.execute(select(PortalLink.portal_id).order_by(PortalLink.portal_id))
    return list(result.scalars())


# Running syncs.


class Syncer:
    """Runs syncs: one at a time per portal, each read outside and applied inside a transaction.

    Made once at start-up (and by the command line) and handed down; it keeps the syncs that
    the bot started in the background, so that they can be awaited or stopped.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = utc_now,
        client_factory: ClientFactory = FastBitrixClient,
        commands_per_batch: int = MAX_BATCH_COMMANDS,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.client_factory = client_factory
        self.commands_per_batch = commands_per_batch
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def is_running(self, portal_id: int) -> bool:
        lock = self._locks.get(portal_id)
        return lock is not None and lock.locked()

    async def sync(
        self,
        portal_id: int,
        *,
        trigger: Trigger,
        actor_id: int | None = None,
        progress: Progress | None = None,
    ) -> SyncOutcome:
        """Sync one portal now (after any sync of it already running); NotLinked if unlinked."""
        lock = self._locks.setdefault(portal_id, asyncio.Lock())
        async with lock:
            return await self._sync(portal_id, trigger, actor_id, progress)

    async def sync_all(self) -> list[SyncOutcome]:
        """The scheduled run: every linked portal, one after another."""
        async with self.session_factory() as session:
            portal_ids = await linked_portal_ids(session)
        outcomes: list[SyncOutcome] = []
        for portal_id in portal_ids:
            try:
                outcomes.append(await self.sync(portal_id, trigger=Trigger.SCHEDULE))
            except NotLinked:
                continue
            except Exception:
                # One portal's trouble must not keep the others from their sync.
                log.exception("the scheduled sync of portal %s stopped", portal_id)
        return outcomes

    def in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` (a sync the bot started, with its messages) without holding the update."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a sync started from the bot failed", exc_info=task.exception())

    async def wait_idle(self) -> None:
        """Until every sync started in the background has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.wait_idle()

    async def _sync(
        self, portal_id: int, trigger: Trigger, actor_id: int | None, progress: Progress | None
    ) -> SyncOutcome:
        async with self.session_factory() as session:
            row = (
                await session.execute(
                    select(Portal, PortalLink)
                    .join(PortalLink, PortalLink.portal_id == Portal.id)
                    .where(Portal.id == portal_id)
                )
            ).one_or_none()
            if row is None:
                raise NotLinked(portal_id)
            portal, link = row
            # The stored URL passed the checks when it was linked.
            webhook = parse_webhook(link.webhook_url, allow_loopback_http=True)
            expected_departments = await _count(
                session, Department, Department.portal_id == portal_id
            )
            limits = limits_for_plan(portal.plan)
            address = portal.address

        log.info("syncing portal %s from Bitrix24 (%s)", address, trigger.value)
        client = self.client_factory(webhook, limits)
        snapshot: PortalSnapshot | None = None
        failure: BitrixError | None = None
        try:
            snapshot = await read_portal(
                client,
                commands_per_batch=self.commands_per_batch,
                expected_departments=expected_departments,
                progress=progress,
            )
        except BitrixError as error:
            failure = error
        finally:
            requests = client.requests
            await client.aclose()

        context = _Context(portal_id, trigger, actor_id, requests, webhook.url)
        if snapshot is not None:
            try:
                async with self.session_factory() as session:
                    outcome = await apply_sync(session, context, snapshot, now=self.clock())
                    await session.commit()
                return outcome
            except SnapshotError as error:
                failure = BitrixError(FailureKind.MALFORMED, str(error))
        assert failure is not None
        async with self.session_factory() as session:
            outcome = await record_failure(session, context, failure, now=self.clock())
            await session.commit()
        return outcome


@dataclass(frozen=True, slots=True)
class _Context:
    portal_id: int
    trigger: Trigger
    actor_id: int | None
    requests: int
    # The webhook the read went through: if the link changed meanwhile, the read is stale.
    webhook_url: str


async def _count(session: AsyncSession, model: type[Any], *conditions: Any) -> int:
    result = await session.execute(select(func.count()).select_from(model).where(*conditions))
    return int(result.scalar_one())


async def _current_link(session: AsyncSession, context: _Context) -> tuple[Portal, PortalLink]:
    row = (
        await session.execute(
            select(Portal, PortalLink)
            .join(PortalLink, PortalLink.portal_id == Portal.id)
            .where(Portal.id == context.portal_id)
            .with_for_update(of=PortalLink)
        )
    ).one_or_none()
    if row is None or row[1].webhook_url != context.webhook_url:
        raise NotLinked(context.portal_id)
    return row[0], row[1]


async def _admins(session: AsyncSession, portal_id: int) -> list[int]:
    result = await session.execute(
        select(Membership.person_id)
        .where(Membership.portal_id == portal_id, Membership.role == Role.ADMIN.value)
        .order_by(Membership.person_id)
    )
    return list(result.scalars())


async def _tell_admins(
    session: AsyncSession,
    context: _Context,
    portal: Portal,
    kind: str,
    event: tuple[str, datetime],
    now: datetime,
    **details: Any,
) -> None:
    """Owe a notice about the portal's link to each of its admins but the one who acted.

    `event` is what happened and when: with the portal and the person it makes each notice's
    key, so the same event is never owed twice.
    """
    what, moment = event
    for person_id in await _admins(session, portal.id):
        if person_id == context.actor_id:
            continue
        await outbox.owe(
            session,
            person_id=person_id,
            kind=kind,
            dedupe_key=f"{what}:{portal.id}:{moment.isoformat()}:{person_id}",
            now=now,
            portal_id=portal.id,
            portal_name=portal.name,
            portal_address=portal.address,
            **details,
        )


async def apply_sync(
    session: AsyncSession, context: _Context, snapshot: PortalSnapshot, *, now: datetime
) -> SyncOutcome:
    """Write what the read found, mark the link healthy, and tell the admins of a recovery."""
    portal, link = await _current_link(session, context)
    actor = await session.get(Person, context.actor_id) if context.actor_id else None
    changes = await apply_snapshot(session, portal, snapshot, now=now)

    recovered = link.status == FAILING
    failing_since = link.failing_since
    link.status = OK
    link.failure_reason = None
    link.failing_since = None
    link.last_attempt_at = now
    link.last_synced_at = now
    if recovered and failing_since is not None:
        await _tell_admins(
            session, context, portal, RECOVERED_NOTICE, ("bitrix-recovered", failing_since), now
        )
    audit.record(
        session,
        at=now,
        actor=actor,
        actor_text=context.trigger.value if actor is None else None,
        action=SYNC_ACTION,
        portal=portal,
        trigger=context.trigger.value,
        requests=context.requests,
        staff=len(snapshot.employees),
        departments=len(snapshot.departments),
        changes=changes.as_details(),
    )
    log.info(
        "portal %s synced from Bitrix24 in %d requests: %d people (+%d, ~%d, -%d), "
        "%d departments (+%d, ~%d, -%d)",
        portal.address,
        context.requests,
        len(snapshot.employees),
        changes.people_added,
        changes.people_updated,
        changes.people_left,
        len(snapshot.departments),
        changes.departments_added,
        changes.departments_updated,
        changes.departments_removed,
    )
    return SyncOutcome(
        portal_id=portal.id,
        portal_name=portal.name,
        portal_address=portal.address,
        requests=context.requests,
        changes=changes,
        staff=len(snapshot.employees),
        departments=len(snapshot.departments),
        recovered=recovered,
    )


async def record_failure(
    session: AsyncSession, context: _Context, failure: BitrixError, *, now: datetime
) -> SyncOutcome:
    """Keep the previous data, mark the link failing, and tell the admins once per run."""
    portal, link = await _current_link(session, context)
    actor = await session.get(Person, context.actor_id) if context.actor_id else None
    first = link.status != FAILING
    link.status = FAILING
    link.failure_reason = failure.words
    link.last_attempt_at = now
    if first or link.failing_since is None:
        link.failing_since = now
        await _tell_admins(
            session,
            context,
            portal,
            FAILED_NOTICE,
            ("bitrix-failed", now),
            now,
            reason=failure.kind.value,
            code=failure.code,
            failing_since=now,
        )
    audit.record(
        session,
        at=now,
        actor=actor,
        actor_text=context.trigger.value if actor is None else None,
        action=SYNC_ACTION,
        portal=portal,
        outcome="failed",
        trigger=context.trigger.value,
        requests=context.requests,
        reason=failure.words,
    )
    log.warning("the sync of portal %s failed: %s", portal.address, failure.words)
    return SyncOutcome(
        portal_id=portal.id,
        portal_name=portal.name,
        portal_address=portal.address,
        requests=context.requests,
        failure=failure,
        failing_from_now=first,
    )


# Applying a read.


def check_snapshot(snapshot: PortalSnapshot) -> None:
    """Refuse an answer that cannot be a company structure: it is not applied at all."""
    parents = {department.id: department.parent_id for department in snapshot.departments}
    settled: set[str] = set()
    for start in parents:
        path: list[str] = []
        current: str | None = start
        while current is not None and current not in settled:
            if current in path:
                raise SnapshotError(f"department {current} is its own ancestor")
            path.append(current)
            current = parents.get(current)
        settled.update(path)


async def apply_snapshot(
    session: AsyncSession, portal: Portal, snapshot: PortalSnapshot, *, now: datetime
) -> SyncChanges:
    """Make the portal's staff and structure what the snapshot says; returns what changed."""
    check_snapshot(snapshot)
    remote_departments = {department.id: department for department in snapshot.departments}

    departments = list(
        (await session.scalars(select(Department).where(Department.portal_id == portal.id))).all()
    )
    kept = {d.external_id: d for d in departments if d.external_id in remote_departments}
    stale_ids = [d.id for d in departments if d.external_id not in remote_departments]
    keys = {d.key for d in departments}

    added: set[str] = set()
    for remote in snapshot.departments:
        if remote.id not in kept:
            department = Department(
                portal_id=portal.id,
                key=_free_key(keys, f"{DEPARTMENT_KEY_PREFIX}{remote.id}"),
                name=remote.name,
                external_id=remote.id,
            )
            session.add(department)
            kept[remote.id] = department
            added.add(remote.id)
    await session.flush()

    staff = await _apply_people(session, portal, snapshot.employees, kept, now)

    departments_updated = 0
    for remote in snapshot.departments:
        department = kept[remote.id]
        parent = kept.get(remote.parent_id) if remote.parent_id else None
        head = staff.person_ids.get(remote.head_id) if remote.head_id else None
        wanted = (remote.name, parent.id if parent is not None else None, head)
        current = (department.name, department.parent_id, department.head_person_id)
        if wanted != current:
            department.name, department.parent_id, department.head_person_id = wanted
            if remote.id not in added:
                departments_updated += 1
    await session.flush()
    # Only now: the departments that stay no longer point at the ones that go.
    for chunk in _chunks(stale_ids):
        await session.execute(
            delete(Department).where(Department.id.in_(chunk)),
            execution_options={"synchronize_session": False},
        )
    return SyncChanges(
        people_added=staff.added,
        people_updated=staff.updated,
        people_left=staff.left,
        departments_added=len(added),
        departments_updated=departments_updated,
        departments_removed=len(stale_ids),
    )


def _free_key(taken: set[str], wanted: str) -> str:
    key, number = wanted, 1
    while key in taken:
        number += 1
        key = f"{wanted}-{number}"
    taken.add(key)
    return key


@dataclass
class _StaffResult:
    # Bitrix24 user id -> our person id, for department heads.
    person_ids: dict[str, int]
    added: int = 0
    updated: int = 0
    left: int = 0


async def _apply_people(
    session: AsyncSession,
    portal: Portal,
    employees: Sequence[RemoteEmployee],
    departments: dict[str, Department],
    now: datetime,
) -> _StaffResult:
    rows = (
        await session.execute(
            select(Membership, Person)
            .join(Person, Person.id == Membership.person_id)
            .where(Membership.portal_id == portal.id)
        )
    ).all()
    by_external: dict[str, tuple[Membership, Person]] = {}
    by_person: dict[int, Membership] = {}
    for membership, person in rows:
        by_person[person.id] = membership
        if membership.external_id is not None:
            by_external[membership.external_id] = (membership, person)

    emails = sorted({employee.email for employee in employees if employee.email})
    email_owners: dict[str, Person] = {}
    for chunk in _chunks(emails):
        for person in (await session.scalars(select(Person).where(Person.email.in_(chunk)))).all():
            if person.email is not None:
                email_owners[person.email] = person

    result = _StaffResult(person_ids={})
    remote_ids = {employee.id for employee in employees}
    new_people: list[tuple[RemoteEmployee, Person]] = []
    adopted: set[str] = set()
    joined: set[str] = set()
    for employee in employees:
        if employee.id in by_external:
            continue
        owner = email_owners.get(employee.email) if employee.email else None
        if owner is not None:
            found: Membership | None = by_person.get(owner.id)
            if found is None:
                found = Membership(
                    person_id=owner.id, portal_id=portal.id, role=Role.EMPLOYEE.value
                )
                session.add(found)
                by_person[owner.id] = found
                joined.add(employee.id)
            elif found.external_id is not None and found.external_id in remote_ids:
                # Another Bitrix24 user with the same email: a person of their own.
                found = None
            else:
                # On the staff already (from the network file or an invite), or re-created on
                # Bitrix24 under a new id: the same person, now synced, not one who left.
                adopted.add(employee.id)
                if found.external_id is not None:
                    by_external.pop(found.external_id, None)
            if found is not None:
                found.external_id = employee.id
                by_external[employee.id] = (found, owner)
                continue
        taken = employee.email is None or employee.email in email_owners
        person = Person(
            name=employee.name,
            name_folded=employee.name.casefold(),
            email=None if taken else employee.email,
            created_at=now,
        )
        if person.email is not None:
            email_owners[person.email] = person
        session.add(person)
        new_people.append((employee, person))
    await session.flush()
    for employee, person in new_people:
        membership = Membership(
            person_id=person.id,
            portal_id=portal.id,
            role=Role.EMPLOYEE.value,
            external_id=employee.id,
        )
        session.add(membership)
        by_external[employee.id] = (membership, person)
    result.added = len(new_people) + len(joined)
    await session.flush()

    # Who left: synced before, not on Bitrix24's list now.
    left = [
        (membership, person)
        for external_id, (membership, person) in by_external.items()
        if external_id not in remote_ids
    ]
    # Limitation: an admin who left Bitrix24 goes too, even when the last one.
    await _remove_memberships(session, portal.id, left, now)
    result.left = len(left)

    existing_pairs = await _existing_department_pairs(session, portal.id)
    existing_phones = await _existing_phones(session, portal.id)
    pairs_before: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for pair in existing_pairs:
        pairs_before[pair[0]].add(pair)
    phones_before: dict[int, set[tuple[int, str]]] = defaultdict(set)
    for phone_pair in existing_phones:
        phones_before[phone_pair[0]].add(phone_pair)
    wanted_pairs: set[tuple[int, int]] = set()
    wanted_phones: set[tuple[int, str]] = set()
    fresh = {employee.id for employee, _ in new_people} | joined
    for employee in employees:
        membership, person = by_external[employee.id]
        result.person_ids[employee.id] = person.id
        changed = False
        if person.name != employee.name:
            person.name = employee.name
            person.name_folded = employee.name.casefold()
            changed = True
        if membership.position != employee.position:
            membership.position = employee.position
            changed = True
        if person.email is None and employee.email and employee.email not in email_owners:
            person.email = employee.email
            email_owners[employee.email] = person
            changed = True
        pairs = {
            (membership.id, departments[department_id].id)
            for department_id in employee.department_ids
            if department_id in departments
        }
        phones = {(membership.id, phone) for phone in employee.phones}
        if pairs != pairs_before.get(membership.id, set()):
            changed = True
        if phones != phones_before.get(membership.id, set()):
            changed = True
        wanted_pairs |= pairs
        wanted_phones |= phones
        if (changed or employee.id in adopted) and employee.id not in fresh:
            result.updated += 1

    await _write_pairs(session, existing_pairs, wanted_pairs, existing_phones, wanted_phones)
    return result


async def _existing_department_pairs(
    session: AsyncSession, portal_id: int
) -> set[tuple[int, int]]:
    link = membership_departments.c
    result = await session.execute(
        select(link.membership_id, link.department_id)
        .join(Membership, Membership.id == link.membership_id)
        # Staff the bot added itself keep their departments: only synced staff are compared.
        .where(Membership.portal_id == portal_id, Membership.external_id.is_not(None))
    )
    return {(row[0], row[1]) for row in result.all()}


async def _existing_phones(session: AsyncSession, portal_id: int) -> set[tuple[int, str]]:
    result = await session.execute(
        select(MembershipPhone.membership_id, MembershipPhone.phone)
        .join(Membership, Membership.id == MembershipPhone.membership_id)
        .where(Membership.portal_id == portal_id, Membership.external_id.is_not(None))
    )
    return {(row[0], row[1]) for row in result.all()}


async def _write_pairs(
    session: AsyncSession,
    existing_pairs: set[tuple[int, int]],
    wanted_pairs: set[tuple[int, int]],
    existing_phones: set[tuple[int, str]],
    wanted_phones: set[tuple[int, str]],
) -> None:
    link = membership_departments.c
    for chunk in _chunks(sorted(existing_pairs - wanted_pairs)):
        await session.execute(
            delete(membership_departments).where(
                tuple_(link.membership_id, link.department_id).in_(chunk)
            )
        )
    for chunk in _chunks(sorted(wanted_pairs - existing_pairs)):
        await session.execute(
            insert(membership_departments),
            [{"membership_id": m, "department_id": d} for m, d in chunk],
        )
    for phones in _chunks(sorted(existing_phones - wanted_phones)):
        await session.execute(
            delete(MembershipPhone).where(
                tuple_(MembershipPhone.membership_id, MembershipPhone.phone).in_(phones)
            ),
            execution_options={"synchronize_session": False},
        )
    for phones in _chunks(sorted(wanted_phones - existing_phones)):
        await session.execute(
            insert(MembershipPhone), [{"membership_id": m, "phone": p} for m, p in phones]
        )


async def _remove_memberships(
    session: AsyncSession,
    portal_id: int,
    left: list[tuple[Membership, Person]],
    now: datetime,
) -> None:
    """People who left: their membership ends; the person, their link and history stay."""
    if not left:
        return
    membership_ids = [membership.id for membership, _ in left]
    person_ids = [person.id for _, person in left]
    for chunk in _chunks(membership_ids):
        await session.execute(
            delete(Membership).where(Membership.id.in_(chunk)),
            execution_options={"synchronize_session": False},
        )
    for chunk in _chunks(person_ids):
        await session.execute(
            update(Person)
            .where(Person.id.in_(chunk), Person.current_portal_id == portal_id)
            .values(current_portal_id=None),
            execution_options={"synchronize_session": False},
        )
        # An invite meant for one of them would put them back: it is withdrawn.
        await session.execute(
            update(Invite)
            .where(
                Invite.person_id.in_(chunk),
                Invite.portal_id == portal_id,
                Invite.used_at.is_(None),
                Invite.revoked_at.is_(None),
            )
            .values(revoked_at=now),
            execution_options={"synchronize_session": False},
        )
    for membership, person in left:
        session.expunge(membership)
        if person.current_portal_id == portal_id:
            person.current_portal_id = None


def _chunks(items: Sequence[T] | Iterable[T]) -> list[list[T]]:
    listed = list(items)
    return [listed[start : start + CHUNK] for start in range(0, len(listed), CHUNK)]
