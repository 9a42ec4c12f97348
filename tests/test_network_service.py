"""Branch administration at the service level: every rule, refusal, race and timed change."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.access import member_access
from domain.addresses import AddressError
from domain.rules import (
    DEMO_LENGTH,
    GRACE_LENGTH,
    Plan,
    PortalFacts,
    Refusal,
    Role,
    demo_end_incompatible_until,
    grace_expired,
    told_of_branch_event,
)
from services import network
from services.notices import params_of
from services.people import person_by_telegram_id
from storage.models import AuditEntry, Membership, Notice, Person, Portal
from tests import factories
from tests.factories import EPOCH

NOW = EPOCH + timedelta(days=2)


@dataclass
class World:
    head: Portal
    branch: Portal
    loner: Portal
    fresh_free: Portal
    former_free: Portal
    other_head: Portal
    other_branch: Portal
    stranger: Person
    employee: Person
    branch_admin: Person
    head_admin: Person
    both: Person
    unstarted: Person


async def build(session: AsyncSession) -> World:
    """A network (head, branch) and portals around it; the actors of DOMAIN.md's table."""
    head = await factories.portal(session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True)
    branch = await factories.portal(session, "spb.acme.ru", "Acme SPb", head=head)
    loner = await factories.portal(session, "nsk.acme.ru", "Acme Nsk")
    fresh_free = await factories.portal(session, "kzn.acme.ru", "Acme Kzn", Plan.FREE)
    former_free = await factories.portal(
        session, "ekb.acme.ru", "Acme Ekb", Plan.FREE, ever_in_network=True
    )
    other_head = await factories.portal(
        session, "globex.ru", "Globex", Plan.ENTERPRISE, is_head=True
    )
    other_branch = await factories.portal(session, "msk.globex.ru", "Globex Msk", head=other_head)

    stranger = await factories.person(session, "Stranger", 900)
    employee = await factories.person(session, "Employee", 901)
    branch_admin = await factories.person(session, "Branch Admin", 902)
    head_admin = await factories.person(session, "Head Admin", 903)
    both = await factories.person(session, "Admin of Both", 904)
    unstarted = await factories.person(session, "Not Started", 905, started=False)

    for where in (head, branch, loner):
        await factories.member(session, employee, where, Role.EMPLOYEE)
    for where in (branch, loner, fresh_free, former_free):
        await factories.member(session, branch_admin, where, Role.ADMIN)
    await factories.member(session, head_admin, head, Role.ADMIN)
    for where in (head, branch, loner, fresh_free, former_free, other_head, other_branch):
        await factories.member(session, both, where, Role.ADMIN)
    await factories.member(session, unstarted, branch, Role.ADMIN)
    await session.commit()
    return World(
        head,
        branch,
        loner,
        fresh_free,
        former_free,
        other_head,
        other_branch,
        stranger,
        employee,
        branch_admin,
        head_admin,
        both,
        unstarted,
    )


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await build(session)


async def owed(session: AsyncSession, kind: str | None = None) -> list[Notice]:
    await session.flush()
    statement = select(Notice).order_by(Notice.person_id, Notice.id)
    if kind is not None:
        statement = statement.where(Notice.kind == kind)
    return list((await session.execute(statement)).scalars())


async def log_of(session: AsyncSession, action: str) -> list[AuditEntry]:
    await session.flush()
    result = await session.execute(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
    )
    return list(result.scalars())


# The pure rules added for these services.


def test_each_admin_is_told_once_and_never_the_actor() -> None:
    assert told_of_branch_event([1, 2, 3], [3, 4], actor_id=2) == [1, 3, 4]
    assert told_of_branch_event([1], [1], actor_id=None) == [1]
    assert told_of_branch_event([5], [], actor_id=5) == []


def test_a_demo_ends_into_incompatibility_only_on_a_free_branch() -> None:
    ended = PortalFacts(id=2, plan=Plan.FREE, head_id=1, demo_until=NOW)
    assert demo_end_incompatible_until(ended, NOW) == NOW + GRACE_LENGTH
    assert demo_end_incompatible_until(ended, NOW - timedelta(seconds=1)) is None
    paying = PortalFacts(id=2, plan=Plan.BASIC, head_id=1, demo_until=NOW)
    assert demo_end_incompatible_until(paying, NOW) is None
    marked = PortalFacts(id=2, plan=Plan.FREE, head_id=1, demo_until=NOW, incompatible_until=NOW)
    assert demo_end_incompatible_until(marked, NOW) is None
    assert grace_expired(marked, NOW)
    assert not grace_expired(marked, NOW - timedelta(seconds=1))


# Connecting.


@pytest.mark.parametrize(
    ("actor", "target", "head", "expected"),
    [
        ("stranger", "loner", "head", Refusal.NOT_VISIBLE),
        ("employee", "loner", "head", Refusal.NOT_ADMIN_OF_BOTH),
        ("branch_admin", "loner", "head", Refusal.NOT_VISIBLE),
        ("head_admin", "loner", "head", Refusal.NOT_VISIBLE),
        ("both", "head", "head", Refusal.IS_SAME_PORTAL),
        ("both", "branch", "head", Refusal.ALREADY_IN_NETWORK),
        ("both", "other_branch", "head", Refusal.ALREADY_IN_NETWORK),
        ("both", "other_head", "head", Refusal.PORTAL_IS_HEAD),
        ("both", "former_free", "head", Refusal.FREE_WAS_IN_NETWORK),
        ("both", "branch", "other_branch", Refusal.HEAD_IS_BRANCH),
        ("both", "fresh_free", "loner", Refusal.HEAD_NOT_ENTERPRISE),
    ],
)
async def test_connect_refusals_change_nothing(
    session: AsyncSession, world: World, actor: str, target: str, head: str, expected: Refusal
) -> None:
    portal: Portal = getattr(world, target)
    before = (portal.head_id, portal.plan, portal.demo_until)

    result = await network.connect(
        session, actor=getattr(world, actor), head=getattr(world, head), portal=portal, now=NOW
    )
    await session.commit()

    assert result is expected
    await session.refresh(portal)
    assert (portal.head_id, portal.plan, portal.demo_until) == before
    [entry] = await log_of(session, "connect")
    assert entry.outcome == "refused"
    assert expected.value in entry.details
    # A portal the actor may not see is not named in the log either.
    assert (entry.portal_id is None) is (expected is Refusal.NOT_VISIBLE)
    assert await owed(session) == []


async def test_connect_a_commercial_portal_tells_its_other_admins_once(
    session: AsyncSession, world: World
) -> None:
    result = await network.connect(
        session, actor=world.both, head=world.head, portal=world.loner, now=NOW
    )
    await session.commit()

    assert isinstance(result, network.Connected)
    assert result.demo_until is None
    assert (world.loner.head_id, world.loner.connected_at) == (world.head.id, NOW)
    assert world.loner.ever_in_network

    notices = await owed(session, "branch_connected")
    # The loner's admins are the branch admin and the actor; the actor gets the answer.
    assert [notice.person_id for notice in notices] == [world.branch_admin.id]
    params = params_of(notices[0])
    assert params["branch_name"] == "Acme Nsk"
    assert params["head_name"] is None, "the branch admin is not on the head's staff"
    assert params["demo_until"] is None
    [entry] = await log_of(session, "connect")
    assert (entry.outcome, entry.network_head_id) == ("ok", world.head.id)


async def test_a_free_portal_gets_its_demo_only_once(session: AsyncSession, world: World) -> None:
    first = await network.connect(
        session, actor=world.both, head=world.head, portal=world.fresh_free, now=NOW
    )
    assert isinstance(first, network.Connected)
    assert first.demo_until == NOW + DEMO_LENGTH
    notice = (await owed(session, "branch_connected"))[0]
    assert params_of(notice)["demo_until"] == (NOW + DEMO_LENGTH).isoformat()

    later = NOW + timedelta(days=1)
    gone = await network.disconnect(
        session, branch=world.fresh_free, actor=world.head_admin, now=later, reason="test"
    )
    assert isinstance(gone, network.Disconnected) and not gone.already
    assert world.fresh_free.demo_until is None

    again = await network.connect(
        session, actor=world.both, head=world.head, portal=world.fresh_free, now=later
    )
    assert again is Refusal.FREE_WAS_IN_NETWORK

    await network.set_plan(session, "kzn.acme.ru", Plan.BASIC, later)
    paid = await network.connect(
        session, actor=world.both, head=world.head, portal=world.fresh_free, now=later
    )
    assert isinstance(paid, network.Connected) and paid.demo_until is None


async def test_an_enterprise_portal_joins_as_a_branch(session: AsyncSession, world: World) -> None:
    big = await factories.portal(session, "big.acme.ru", "Acme Big", Plan.ENTERPRISE)
    await factories.member(session, world.both, big, Role.ADMIN)

    result = await network.connect(session, actor=world.both, head=world.head, portal=big, now=NOW)

    assert isinstance(result, network.Connected)
    assert (big.is_head, big.head_id) == (False, world.head.id)
    assert world.head.is_head


async def test_an_enterprise_portal_with_its_first_branch_becomes_a_head(
    session: AsyncSession, world: World
) -> None:
    big = await factories.portal(session, "big.acme.ru", "Acme Big", Plan.ENTERPRISE)
    await factories.member(session, world.both, big, Role.ADMIN)

    result = await network.connect(
        session, actor=world.both, head=big, portal=world.loner, now=NOW
    )

    assert isinstance(result, network.Connected)
    assert big.is_head and world.loner.head_id == big.id
    heads = await network.heads_of(session, world.both.id)
    assert [head.address for head in heads] == ["big.acme.ru", "acme.ru", "globex.ru"]


async def test_a_portal_connected_meanwhile_is_not_connected_twice(
    session_factory: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with session_factory() as first, session_factory() as second:
        results = []
        for session in (first, second):
            actor = await session.get(Person, world.both.id)
            head = await session.get(Portal, world.head.id)
            loner = await session.get(Portal, world.loner.id)
            assert actor is not None and head is not None and loner is not None
            results.append((session, actor, head, loner))
        outcomes = []
        for session, actor, head, loner in results:
            outcomes.append(
                await network.connect(session, actor=actor, head=head, portal=loner, now=NOW)
            )
            await session.commit()
    assert isinstance(outcomes[0], network.Connected)
    assert outcomes[1] is Refusal.ALREADY_IN_NETWORK


async def test_connect_candidates_give_every_reason(session: AsyncSession, world: World) -> None:
    joinable, refused = await network.connect_candidates(session, world.both.id, world.head, NOW)

    assert {portal.address for portal, _plan in joinable} == {"nsk.acme.ru", "kzn.acme.ru"}
    assert {portal.address: refusal for portal, refusal in refused} == {
        "spb.acme.ru": Refusal.ALREADY_IN_NETWORK,
        "ekb.acme.ru": Refusal.FREE_WAS_IN_NETWORK,
        "globex.ru": Refusal.PORTAL_IS_HEAD,
        "msk.globex.ru": Refusal.ALREADY_IN_NETWORK,
    }


# Creating a branch.


async def test_create_branch_makes_a_free_branch_with_a_demo_and_its_admin(
    session: AsyncSession, world: World
) -> None:
    result = await network.create_branch(
        session,
        actor=world.head_admin,
        head=world.head,
        name="  Acme   Omsk ",
        address="https://Omsk.Acme.ru/",
        now=NOW,
    )
    await session.commit()

    assert isinstance(result, Portal)
    assert (result.name, result.address, result.plan) == ("Acme Omsk", "omsk.acme.ru", "free")
    assert (result.head_id, result.demo_until) == (world.head.id, NOW + DEMO_LENGTH)
    assert result.ever_in_network
    role = await session.scalar(
        select(Membership.role).where(
            Membership.portal_id == result.id, Membership.person_id == world.head_admin.id
        )
    )
    assert role == "admin"
    [entry] = await log_of(session, "create")
    assert (entry.outcome, entry.network_head_id, entry.portal_address) == (
        "ok",
        world.head.id,
        "omsk.acme.ru",
    )
    # Its only admin is its creator, who gets the answer instead.
    assert await owed(session) == []


@pytest.mark.parametrize(
    ("name", "address", "expected"),
    [
        ("", "omsk.acme.ru", network.Invalid("name", "empty")),
        ("x" * 201, "omsk.acme.ru", network.Invalid("name", "too_long")),
        ("Omsk", "http://omsk.acme.ru", network.Invalid("address", "not_https")),
        ("Omsk", "10.0.0.1", network.Invalid("address", "ip")),
        ("Omsk", "not an address", network.Invalid("address", "malformed")),
        ("Omsk", "HTTPS://SPB.acme.ru/", network.Invalid("address", "taken")),
    ],
)
async def test_create_branch_validates_name_and_address(
    session: AsyncSession, world: World, name: str, address: str, expected: network.Invalid
) -> None:
    count = await session.scalar(select(func.count()).select_from(Portal))

    result = await network.create_branch(
        session, actor=world.head_admin, head=world.head, name=name, address=address, now=NOW
    )

    assert result == expected
    assert await session.scalar(select(func.count()).select_from(Portal)) == count


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("stranger", Refusal.NOT_VISIBLE),
        ("employee", Refusal.NOT_ADMIN),
        ("branch_admin", Refusal.NOT_VISIBLE),
    ],
)
async def test_create_branch_refusals(
    session: AsyncSession, world: World, actor: str, expected: Refusal
) -> None:
    result = await network.create_branch(
        session,
        actor=getattr(world, actor),
        head=world.head,
        name="Omsk",
        address="omsk.acme.ru",
        now=NOW,
    )
    assert result is expected
    assert await network.portal_by_address(session, "omsk.acme.ru") is None


# Disconnecting.


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("stranger", Refusal.NOT_VISIBLE),
        ("employee", Refusal.NOT_HEAD_ADMIN),
        ("branch_admin", Refusal.NOT_HEAD_ADMIN),
    ],
)
async def test_only_head_admins_disconnect(
    session: AsyncSession, world: World, actor: str, expected: Refusal
) -> None:
    result = await network.disconnect(
        session, branch=world.branch, actor=getattr(world, actor), now=NOW, reason="test"
    )
    await session.commit()

    assert result is expected
    await session.refresh(world.branch)
    assert world.branch.head_id == world.head.id
    assert await owed(session) == []


async def test_disconnect_tells_every_admin_once(session: AsyncSession, world: World) -> None:
    result = await network.disconnect(
        session, branch=world.branch, actor=world.head_admin, now=NOW, reason="by hand"
    )
    await session.commit()

    assert isinstance(result, network.Disconnected) and not result.already
    assert world.branch.head_id is None and world.branch.ever_in_network
    notices = await owed(session, "branch_disconnected")
    # Branch admins and head admins, each once (the admin of both too), never the actor; one
    # who never started the bot is owed it all the same and marked unreachable on sending.
    assert sorted(notice.person_id for notice in notices) == sorted(
        [world.branch_admin.id, world.both.id, world.unstarted.id]
    )
    by_person = {notice.person_id: params_of(notice) for notice in notices}
    assert by_person[world.both.id]["head_name"] == "Acme HQ"
    assert by_person[world.both.id]["actor_name"] == "Head Admin"
    assert by_person[world.branch_admin.id]["head_name"] is None
    assert by_person[world.branch_admin.id]["actor_name"] is None
    [entry] = await log_of(session, "disconnect")
    assert (entry.outcome, entry.network_head_id) == ("ok", world.head.id)

    again = await network.disconnect(
        session,
        branch=world.branch,
        actor=world.both,
        now=NOW,
        reason="by hand",
        head_id=world.head.id,
    )
    assert isinstance(again, network.Disconnected) and again.already


async def test_two_confirmations_at_once_disconnect_once(
    session_factory: async_sessionmaker[AsyncSession], world: World
) -> None:
    async def confirm(person_id: int) -> network.Disconnected | Refusal:
        async with session_factory() as session:
            actor = await session.get(Person, person_id)
            branch = await session.get(Portal, world.branch.id)
            assert actor is not None and branch is not None
            result = await network.disconnect(
                session,
                branch=branch,
                actor=actor,
                now=NOW,
                reason="by hand",
                head_id=world.head.id,
            )
            await session.commit()
            return result

    results = await asyncio.gather(confirm(world.head_admin.id), confirm(world.both.id))

    assert all(isinstance(result, network.Disconnected) for result in results)
    assert sorted(result.already for result in results if not isinstance(result, Refusal)) == [
        False,
        True,
    ]
    async with session_factory() as session:
        entries = await log_of(session, "disconnect")
        assert sorted(entry.outcome for entry in entries) == ["already", "ok"]
        notices = await owed(session, "branch_disconnected")
        recipients = [notice.person_id for notice in notices]
        assert len(recipients) == len(set(recipients))
        acted = next(entry.actor_person_id for entry in entries if entry.outcome == "ok")
        assert acted not in recipients


async def test_a_forged_branch_of_another_network_is_not_visible(
    session: AsyncSession, world: World
) -> None:
    result = await network.disconnect(
        session,
        branch=world.other_branch,
        actor=world.head_admin,
        now=NOW,
        reason="by hand",
        head_id=world.head.id,
    )
    assert result is Refusal.NOT_VISIBLE
    assert world.other_branch.head_id == world.other_head.id


# Plans from billing.


async def test_a_branch_moved_to_free_becomes_incompatible(
    session: AsyncSession, world: World
) -> None:
    result = await network.set_plan(session, "SPB.acme.ru", Plan.FREE, NOW)
    await session.commit()

    assert isinstance(result, network.PlanSet) and result.changed
    assert result.change.becomes_incompatible_until == NOW + GRACE_LENGTH
    await session.refresh(world.branch)
    assert (world.branch.plan, world.branch.incompatible_until) == ("free", NOW + GRACE_LENGTH)
    recipients = {notice.person_id for notice in await owed(session, "branch_incompatible")}
    assert recipients == {
        world.branch_admin.id,
        world.both.id,
        world.unstarted.id,
        world.head_admin.id,
    }
    [entry] = await log_of(session, "plan")
    assert (entry.outcome, entry.actor) == ("ok", "command line")


async def test_a_branch_moved_to_a_commercial_plan_is_compatible_again(
    session: AsyncSession, world: World
) -> None:
    world.branch.plan = Plan.FREE.value
    world.branch.demo_until = NOW - timedelta(days=1)
    world.branch.incompatible_until = NOW + timedelta(days=5)
    await session.commit()

    result = await network.set_plan(session, "spb.acme.ru", Plan.PROFESSIONAL, NOW)
    await session.commit()

    assert isinstance(result, network.PlanSet)
    assert result.change.becomes_compatible and result.change.ends_demo
    assert (result.portal.incompatible_until, result.portal.demo_until) == (None, None)
    assert len(await owed(session, "branch_compatible")) == 4


async def test_a_head_with_branches_cannot_leave_enterprise(
    session: AsyncSession, world: World
) -> None:
    result = await network.set_plan(session, "acme.ru", Plan.PROFESSIONAL, NOW)
    await session.commit()

    assert result is Refusal.HEAD_PLAN_LOCKED
    await session.refresh(world.head)
    assert (world.head.plan, world.head.is_head) == ("enterprise", True)
    [entry] = await log_of(session, "plan")
    assert entry.outcome == "refused"


async def test_a_head_without_branches_stops_being_a_head(
    session: AsyncSession, world: World
) -> None:
    await network.disconnect(
        session, branch=world.branch, actor=world.head_admin, now=NOW, reason="test"
    )

    result = await network.set_plan(session, "acme.ru", Plan.BASIC, NOW)

    assert isinstance(result, network.PlanSet) and result.change.stops_being_head
    assert (world.head.plan, world.head.is_head) == ("basic", False)
    # No longer a head, it cannot take branches.
    refused = await network.connect(
        session, actor=world.both, head=world.head, portal=world.loner, now=NOW
    )
    assert refused is Refusal.HEAD_NOT_ENTERPRISE


async def test_set_plan_unknown_or_unchanged(session: AsyncSession, world: World) -> None:
    with pytest.raises(network.UnknownPortal):
        await network.set_plan(session, "nowhere.example.ru", Plan.BASIC, NOW)
    with pytest.raises(AddressError):
        await network.set_plan(session, "http://acme.ru", Plan.BASIC, NOW)
    same = await network.set_plan(session, "nsk.acme.ru", Plan.STANDARD, NOW)
    assert isinstance(same, network.PlanSet) and not same.changed
    [entry] = await log_of(session, "plan")
    assert entry.outcome == "unchanged"


# Timed state changes.


async def test_a_demo_ending_on_a_free_branch_makes_it_incompatible(
    session: AsyncSession, world: World
) -> None:
    connected = await network.connect(
        session, actor=world.both, head=world.head, portal=world.fresh_free, now=NOW
    )
    assert isinstance(connected, network.Connected) and connected.demo_until is not None
    end = connected.demo_until

    assert await network.expire_demos(session, end - timedelta(seconds=1)) == []
    assert await network.expire_demos(session, end) == [world.fresh_free.id]
    assert await network.expire_demos(session, end + timedelta(hours=1)) == []
    await session.commit()

    assert world.fresh_free.incompatible_until == end + GRACE_LENGTH
    notices = await owed(session, "branch_incompatible")
    assert {notice.person_id for notice in notices} == {
        world.branch_admin.id,
        world.both.id,
        world.head_admin.id,
    }
    assert params_of(notices[0])["reason"] == "demo ended"
    [entry] = await log_of(session, "incompatible")
    assert entry.actor == "system"


async def test_an_upgraded_demo_does_not_become_incompatible(
    session: AsyncSession, world: World
) -> None:
    await network.connect(
        session, actor=world.both, head=world.head, portal=world.fresh_free, now=NOW
    )
    await network.set_plan(session, "kzn.acme.ru", Plan.BASIC, NOW + timedelta(days=1))

    assert await network.expire_demos(session, NOW + DEMO_LENGTH) == []
    assert world.fresh_free.incompatible_until is None


async def test_the_grace_running_out_disconnects_the_branch(
    session: AsyncSession, world: World
) -> None:
    await network.set_plan(session, "spb.acme.ru", Plan.FREE, NOW)
    until = NOW + GRACE_LENGTH

    assert await network.expire_grace(session, until - timedelta(seconds=1)) == []
    assert await network.expire_grace(session, until) == [world.branch.id]
    assert await network.expire_grace(session, until + timedelta(days=1)) == []
    await session.commit()

    await session.refresh(world.branch)
    assert world.branch.head_id is None
    notices = await owed(session, "branch_disconnected")
    # Nobody acted, so everyone concerned is told, once.
    assert sorted(notice.person_id for notice in notices) == sorted(
        [world.branch_admin.id, world.both.id, world.unstarted.id, world.head_admin.id]
    )
    assert all(params_of(notice)["automatic"] for notice in notices)
    [entry] = await log_of(session, "disconnect")
    assert (entry.actor, entry.outcome, entry.network_head_id) == ("system", "ok", world.head.id)
    assert "grace expired" in entry.details


async def test_a_branch_that_moved_up_in_time_stays(session: AsyncSession, world: World) -> None:
    await network.set_plan(session, "spb.acme.ru", Plan.FREE, NOW)
    await network.set_plan(session, "spb.acme.ru", Plan.BASIC, NOW + timedelta(days=3))

    assert await network.expire_grace(session, NOW + GRACE_LENGTH * 2) == []
    assert world.branch.head_id == world.head.id


# Listing.


async def test_branches_are_listed_by_name_in_pages(session: AsyncSession, world: World) -> None:
    for number in range(12):
        await factories.portal(
            session, f"b{number:02}.acme.ru", f"Branch {number:02}", head=world.head
        )

    first = await network.list_branches(session, world.head.id, 0)
    last = await network.list_branches(session, world.head.id, 5)

    assert (first.total, first.pages, len(first.rows)) == (13, 2, 10)
    assert first.rows[0].name == "Acme SPb"
    assert (last.page, len(last.rows), last.offset) == (1, 3, 10)


async def test_the_network_log_keeps_branch_staff_to_the_branch(
    session: AsyncSession, world: World
) -> None:
    await network.set_role(
        session,
        actor=world.branch_admin,
        portal=world.branch,
        person_id=world.employee.id,
        role=Role.ADMIN,
        now=NOW,
    )
    await network.disconnect(
        session, branch=world.branch, actor=world.branch_admin, now=NOW, reason="test"
    )
    await network.set_plan(session, "spb.acme.ru", Plan.FREE, NOW)
    await network.disconnect(
        session, branch=world.branch, actor=world.head_admin, now=NOW, reason="test"
    )
    await session.commit()

    entries = await network.network_audit(session, world.head.id)

    assert [(entry.action, entry.outcome) for entry in entries] == [
        ("disconnect", "ok"),
        ("plan", "ok"),
    ]


# Staff management.


async def test_a_removed_person_loses_access_at_once(session: AsyncSession, world: World) -> None:
    sales = await factories.department(session, world.branch, "Sales", head=world.employee)
    world.employee.current_portal_id = world.branch.id
    await session.commit()
    assert await member_access(session, world.employee, world.branch.id) is not None

    result = await network.remove_member(
        session,
        actor=world.branch_admin,
        portal=world.branch,
        person_id=world.employee.id,
        now=NOW,
    )
    await session.commit()

    assert result is True
    assert await member_access(session, world.employee, world.branch.id) is None
    assert (
        await session.scalar(
            select(Person.current_portal_id).where(Person.id == world.employee.id)
        )
        is None
    )
    await session.refresh(sales)
    assert sales.head_person_id is None
    [entry] = await log_of(session, "remove")
    assert (entry.outcome, entry.actor_person_id) == ("ok", world.branch_admin.id)


async def test_an_unlinked_person_is_a_stranger_on_their_next_tap(
    session: AsyncSession, world: World
) -> None:
    result = await network.unlink_account(
        session,
        actor=world.branch_admin,
        portal=world.branch,
        person_id=world.employee.id,
        now=NOW,
    )
    await session.commit()

    assert result is True
    assert await person_by_telegram_id(session, 901) is None
    assert world.employee.telegram_id is None
    # Still on the staff, just not linked.
    assert await network.member_card(session, world.branch.id, world.employee.id) is not None
    again = await network.unlink_account(
        session,
        actor=world.branch_admin,
        portal=world.branch,
        person_id=world.employee.id,
        now=NOW,
    )
    assert again is False


async def test_roles_change_but_a_portal_keeps_an_admin(
    session: AsyncSession, world: World
) -> None:
    solo = await factories.portal(session, "solo.example.ru", "Solo")
    await factories.member(session, world.branch_admin, solo, Role.ADMIN)
    await factories.member(session, world.employee, solo, Role.EMPLOYEE)

    async def change(role: Role | None, person: Person) -> bool | Refusal:
        if role is None:
            return await network.remove_member(
                session, actor=world.branch_admin, portal=solo, person_id=person.id, now=NOW
            )
        return await network.set_role(
            session, actor=world.branch_admin, portal=solo, person_id=person.id, role=role, now=NOW
        )

    assert await change(Role.EMPLOYEE, world.branch_admin) is Refusal.LAST_ADMIN
    assert await change(None, world.branch_admin) is Refusal.LAST_ADMIN
    assert await change(Role.ADMIN, world.employee) is True
    assert await change(Role.ADMIN, world.employee) is False
    assert await change(Role.EMPLOYEE, world.branch_admin) is True
    assert (
        await network.remove_member(
            session, actor=world.employee, portal=solo, person_id=world.stranger.id, now=NOW
        )
        is Refusal.NOT_A_MEMBER
    )
    assert await network.admin_ids(session, solo.id) == [world.employee.id]


@pytest.mark.parametrize(
    ("actor", "expected"),
    [("stranger", Refusal.NOT_VISIBLE), ("employee", Refusal.NOT_ADMIN)],
)
async def test_only_a_portals_admins_manage_its_staff(
    session: AsyncSession, world: World, actor: str, expected: Refusal
) -> None:
    person = getattr(world, actor)
    assert (
        await network.remove_member(
            session, actor=person, portal=world.branch, person_id=world.both.id, now=NOW
        )
        is expected
    )
    assert (
        await network.unlink_account(
            session, actor=person, portal=world.branch, person_id=world.both.id, now=NOW
        )
        is expected
    )
    assert await network.member_card(session, world.branch.id, world.both.id) is not None


async def test_two_admins_demoting_each_other_leave_one(
    session_factory: async_sessionmaker[AsyncSession], session: AsyncSession, world: World
) -> None:
    duo = await factories.portal(session, "duo.example.ru", "Duo")
    await factories.member(session, world.branch_admin, duo, Role.ADMIN)
    await factories.member(session, world.head_admin, duo, Role.ADMIN)
    await session.commit()

    async def demote(actor_id: int, target_id: int) -> bool | Refusal:
        async with session_factory() as own:
            actor = await own.get(Person, actor_id)
            portal = await own.get(Portal, duo.id)
            assert actor is not None and portal is not None
            result = await network.set_role(
                own, actor=actor, portal=portal, person_id=target_id, role=Role.EMPLOYEE, now=NOW
            )
            await own.commit()
            return result

    results = await asyncio.gather(
        demote(world.branch_admin.id, world.head_admin.id),
        demote(world.head_admin.id, world.branch_admin.id),
    )

    # One demotes the other; the other is refused, as the last admin if both checked at once,
    # or as no longer an admin if the first change came before their check.
    assert results.count(True) == 1
    [refused] = [result for result in results if result is not True]
    assert refused in (Refusal.LAST_ADMIN, Refusal.NOT_ADMIN)
    assert len(await network.admin_ids(session, duo.id)) == 1
