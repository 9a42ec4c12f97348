"""Which reminders are owed, and when, worked out from the database with an injected clock."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import create_i18n
from bot.jobs import TimedChanges
from bot.notices.registry import KINDS, Composed, compose
from bot.views import MESSAGE_LIMIT, utf16_length
from domain.rules import GRACE_LENGTH, Plan, Role
from services.notices import params_of
from services.reminders import DEMO_REMINDER, DISCONNECT_REMINDER, due_lead, owe_due, why_obsolete
from storage.models import Membership, Notice, Person, Portal
from tests import factories
from tests.harness import MutableClock

DAY = timedelta(days=1)
END = datetime(2026, 12, 16, 9, 0, tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")


class Network:
    """A head and one free branch in its demo, with admins on either side or both."""

    head: Portal
    branch: Portal
    both: Person  # admin of the head and of the branch
    branch_admin: Person
    head_admin: Person
    employee: Person


async def network(session: AsyncSession, demo_until: datetime = END) -> Network:
    built = Network()
    built.head = await factories.portal(
        session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True
    )
    built.branch = await factories.portal(
        session, "kzn.acme.ru", "Acme Kazan", Plan.FREE, head=built.head, demo_until=demo_until
    )
    built.both = await factories.person(session, "Anna", 1001)
    built.branch_admin = await factories.person(session, "Boris", 1002)
    built.head_admin = await factories.person(session, "Vera", 1003)
    built.employee = await factories.person(session, "Gleb", 1004)
    await factories.member(session, built.both, built.head, Role.ADMIN)
    await factories.member(session, built.both, built.branch, Role.ADMIN)
    await factories.member(session, built.branch_admin, built.branch, Role.ADMIN)
    await factories.member(session, built.head_admin, built.head, Role.ADMIN)
    await factories.member(session, built.employee, built.branch, Role.EMPLOYEE)
    await session.commit()
    return built


async def owed(session: AsyncSession, kind: str | None = None) -> list[Notice]:
    statement = select(Notice).order_by(Notice.person_id, Notice.id)
    if kind is not None:
        statement = statement.where(Notice.kind == kind)
    return list((await session.execute(statement)).scalars())


async def plan(session: AsyncSession, now: datetime) -> int:
    """One planning run, committed as the scheduled job commits it."""
    planned = await owe_due(session, now)
    await session.commit()
    return planned.owed


def leads(notices: list[Notice]) -> list[tuple[int, int]]:
    return [(notice.person_id, params_of(notice)["lead_days"]) for notice in notices]


def test_the_due_lead_is_the_shortest_that_has_come() -> None:
    assert due_lead(END, END - 8 * DAY) is None
    assert due_lead(END, END - 7 * DAY) == 7 * DAY
    assert due_lead(END, END - 3 * DAY - timedelta(seconds=1)) == 7 * DAY
    assert due_lead(END, END - 3 * DAY) == 3 * DAY
    assert due_lead(END, END - DAY + timedelta(minutes=1)) == DAY
    assert due_lead(END, END) is None


async def test_each_threshold_is_owed_once_to_each_admin_when_it_comes(
    session: AsyncSession,
) -> None:
    built = await network(session)
    admins = sorted([built.both.id, built.branch_admin.id, built.head_admin.id])

    for days in (7, 3, 1):
        threshold = END - days * DAY
        assert await plan(session, threshold - timedelta(seconds=1)) == 0
        assert await plan(session, threshold) == 3
        assert await plan(session, threshold + timedelta(hours=1)) == 0

    notices = await owed(session, DEMO_REMINDER)
    # The admin of both portals has one reminder per threshold, the employee none.
    assert sorted(leads(notices)) == sorted(
        (person, days) for person in admins for days in (7, 3, 1)
    )
    assert all(notice.status == "pending" for notice in notices)
    assert params_of(notices[0])["ends_at"] == END.isoformat()


async def test_a_bot_down_across_two_thresholds_owes_only_the_latest(
    session: AsyncSession,
) -> None:
    await network(session)

    assert await plan(session, END - 2 * DAY) == 3
    assert {days for _person, days in leads(await owed(session))} == {3}
    assert await plan(session, END - 2 * DAY + timedelta(hours=5)) == 0
    assert await plan(session, END - DAY) == 3
    assert {days for _person, days in leads(await owed(session))} == {3, 1}


async def test_a_clock_set_back_never_owes_an_earlier_threshold_after_a_later_one(
    session: AsyncSession,
) -> None:
    await network(session)
    assert await plan(session, END - 2 * DAY) == 3

    assert await plan(session, END - 5 * DAY) == 0


async def test_restarts_never_owe_a_reminder_twice(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        await network(session)
    clock = MutableClock(END - 6 * DAY)

    # Each run is a fresh job, as after a restart: nothing is remembered but the database.
    runs = [await TimedChanges(session_factory, clock).run() for _ in range(3)]
    clock.advance(hours=12)
    runs.append(await TimedChanges(session_factory, clock).run())

    assert [run.reminders_owed for run in runs] == [3, 0, 0, 0]
    async with session_factory() as session:
        assert len(await owed(session)) == 3


async def test_an_upgraded_branch_gets_nothing(session: AsyncSession) -> None:
    built = await network(session)
    assert await plan(session, END - 7 * DAY) == 3
    owed_before = await owed(session)

    built.branch.plan = Plan.STANDARD.value
    built.branch.demo_until = None
    await session.commit()

    assert await plan(session, END - 3 * DAY) == 0
    assert await plan(session, END - DAY) == 0
    # What was owed before the upgrade is not sent either.
    for notice in owed_before:
        reason = await why_obsolete(session, notice.person_id, params_of(notice), END - 3 * DAY)
        assert reason == "the branch has moved to a commercial plan"


async def test_a_disconnected_branch_gets_nothing(session: AsyncSession) -> None:
    built = await network(session)
    assert await plan(session, END - 7 * DAY) == 3
    notice = (await owed(session))[0]

    built.branch.head_id = None
    await session.commit()

    assert await plan(session, END - 3 * DAY) == 0
    reason = await why_obsolete(session, notice.person_id, params_of(notice), END - 6 * DAY)
    assert reason == "the branch has left the network"


async def test_a_moved_demo_end_starts_its_reminders_afresh(session: AsyncSession) -> None:
    built = await network(session)
    assert await plan(session, END - 6 * DAY) == 3
    old = (await owed(session))[0]

    moved = END + 10 * DAY
    built.branch.demo_until = moved
    await session.commit()

    assert await plan(session, END - 5 * DAY) == 0
    assert await why_obsolete(session, old.person_id, params_of(old), END - 5 * DAY) == (
        "the end date has moved"
    )
    assert await plan(session, moved - 7 * DAY) == 3
    fresh = [n for n in await owed(session) if params_of(n)["ends_at"] == moved.isoformat()]
    assert {days for _person, days in leads(fresh)} == {7}
    assert {n.dedupe_key for n in fresh}.isdisjoint({old.dedupe_key})


async def test_a_reminder_owed_but_unsent_is_superseded_by_a_later_one(
    session: AsyncSession,
) -> None:
    await network(session)
    assert await plan(session, END - 7 * DAY) == 3
    seven = (await owed(session))[0]

    assert await why_obsolete(session, seven.person_id, params_of(seven), END - 4 * DAY) is None
    assert await why_obsolete(session, seven.person_id, params_of(seven), END - 3 * DAY) == (
        "a later reminder has fallen due"
    )
    assert await why_obsolete(session, seven.person_id, params_of(seven), END) == (
        "the end has passed"
    )


async def test_a_person_no_longer_an_admin_is_not_sent_an_owed_reminder(
    session: AsyncSession,
) -> None:
    built = await network(session)
    assert await plan(session, END - 7 * DAY) == 3
    await session.execute(
        update(Membership)
        .where(Membership.person_id == built.branch_admin.id)
        .values(role=Role.EMPLOYEE.value)
    )
    await session.commit()
    notice = next(n for n in await owed(session) if n.person_id == built.branch_admin.id)

    reason = await why_obsolete(session, notice.person_id, params_of(notice), END - 6 * DAY)
    assert reason == "no longer an administrator of the branch or its head"


async def test_a_head_admin_off_the_branch_staff_opens_it_from_the_network(
    session: AsyncSession,
) -> None:
    built = await network(session)
    await factories.member(session, built.employee, built.head, Role.ADMIN)
    await session.commit()
    assert await plan(session, END - 7 * DAY) == 4

    on_staff = {n.person_id: params_of(n)["on_branch_staff"] for n in await owed(session)}
    assert on_staff == {
        built.both.id: True,
        built.branch_admin.id: True,
        built.head_admin.id: False,
        built.employee.id: True,  # an employee of the branch, an admin of the head
    }


async def test_an_ended_demo_then_grace_reminders_then_disconnection(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        built = await network(session)
    clock = MutableClock(END)
    timed = TimedChanges(session_factory, clock)

    assert (await timed.run()).demos_ended == 1
    until = END + GRACE_LENGTH
    clock.now = until - 7 * DAY
    assert (await timed.run()).reminders_owed == 3
    clock.now = until - 3 * DAY
    assert (await timed.run()).reminders_owed == 3
    clock.now = until
    ended = await timed.run()
    assert (ended.disconnected, ended.reminders_owed) == (1, 0)

    async with session_factory() as session:
        kinds = [notice.kind for notice in await owed(session)]
        branch = await session.get(Portal, built.branch.id)
    assert kinds.count("branch_incompatible") == 3
    assert kinds.count(DISCONNECT_REMINDER) == 6
    assert kinds.count("branch_disconnected") == 3
    assert branch is not None and branch.head_id is None


async def test_an_incompatible_branch_that_moves_to_a_commercial_plan_gets_nothing(
    session: AsyncSession,
) -> None:
    built = await network(session, demo_until=END - 20 * DAY)
    built.branch.incompatible_until = END
    await session.commit()
    assert await plan(session, END - 7 * DAY) == 3
    notice = (await owed(session, DISCONNECT_REMINDER))[0]

    built.branch.plan = Plan.BASIC.value
    built.branch.incompatible_until = None
    await session.commit()

    assert await plan(session, END - 3 * DAY) == 0
    reason = await why_obsolete(session, notice.person_id, params_of(notice), END - 5 * DAY)
    assert reason == "the branch is compatible again"


async def test_planning_takes_the_same_few_queries_for_three_branches_or_three_hundred(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async def branches(session: AsyncSession, head: Portal, count: int, start: int) -> None:
        admin = await factories.person(session, f"Head admin {start}", 50_000 + start)
        await factories.member(session, admin, head, Role.ADMIN)
        for number in range(start, start + count):
            branch = await factories.portal(
                session, f"b{number}.acme.ru", plan=Plan.FREE, head=head, demo_until=END
            )
            person = await factories.person(session, f"Admin {number}", 10_000 + number)
            await factories.member(session, person, branch, Role.ADMIN)
        await session.commit()

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    async def planned_queries(now: datetime) -> tuple[int, int]:
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            async with session_factory() as session:
                owed = await plan(session, now)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        return owed, len(statements)

    async with session_factory() as session:
        head = await factories.portal(session, "acme.ru", plan=Plan.ENTERPRISE, is_head=True)
        await branches(session, head, 3, 0)
    few = await planned_queries(END - 7 * DAY)

    async with session_factory() as session:
        head = await factories.portal(session, "big.ru", plan=Plan.ENTERPRISE, is_head=True)
        await branches(session, head, 300, 1000)
    many = await planned_queries(END - 3 * DAY)

    assert few[0] == 3 + 3
    assert many[0] == 300 * 2 + 3 * 2
    assert many[1] == few[1]


# How the reminders read.


def composed(kind: str, notices: list[dict[str, Any]]) -> list[Composed]:
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale("en"):
        return compose(KINDS[kind], notices, MOSCOW)


def reminder_params(number: int, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ending": "demo",
        "branch_id": number,
        "head_id": 1,
        "branch_name": f"Branch number {number} with a fairly long name",
        "branch_address": f"branch-{number}.example.ru",
        "ends_at": END.isoformat(),
        "lead_days": 3,
        "on_branch_staff": True,
    }
    params.update(overrides)
    return params


def test_a_reminder_names_the_branch_the_moment_and_what_to_do() -> None:
    [message] = composed(DEMO_REMINDER, [reminder_params(7)])
    text = message.text.as_kwargs()["text"]

    assert "Branch number 7 with a fairly long name (branch-7.example.ru)" in text
    assert "16.12.2026 12:00 (UTC+03:00)" in text
    assert "commercial plan" in text
    assert message.markup is not None
    [[button]] = message.markup.inline_keyboard
    assert button.callback_data == "p:m:7"


def test_a_head_admin_off_the_staff_gets_the_branch_card_button() -> None:
    params = reminder_params(7, on_branch_staff=False, head_id=3)
    [message] = composed(DISCONNECT_REMINDER, [params])
    assert message.markup is not None
    assert message.markup.inline_keyboard[0][0].callback_data == "nw:r:3:7:0"
    assert (
        "will be disconnected from the network on 16.12.2026" in message.text.as_kwargs()["text"]
    )


@pytest.mark.parametrize("count", [3, 150])
def test_many_branches_for_one_person_go_in_few_messages_within_the_limits(count: int) -> None:
    notices = [reminder_params(number) for number in range(count)]
    messages = composed(DEMO_REMINDER, notices)

    assert sum(message.covers for message in messages) == count
    named: list[str] = []
    for message in messages:
        text = message.text.as_kwargs()["text"]
        assert utf16_length(text) <= MESSAGE_LIMIT
        assert message.markup is not None
        assert len(message.markup.inline_keyboard) == message.covers <= 40
        named += [line for line in text.splitlines() if line.startswith("• ")]
    assert len(named) == count
    assert all(f"(branch-{number}.example.ru)" in named[number] for number in range(count))
    assert len(messages) == (1 if count == 3 else 4)
