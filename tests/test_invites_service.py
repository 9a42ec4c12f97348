"""Invites below the bot: linking a staff record, merging accounts, single use under races."""

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from domain.rules import Role
from services.invites import Redeemed, TelegramIdentity, create_invite, redeem
from services.people import person_by_telegram_id
from storage.models import AuditEntry, Department, Membership, Notice, Person
from tests import factories
from tests.factories import EPOCH

WEEK = timedelta(days=7)


def identity(telegram_id: int, name: str = "Someone") -> TelegramIdentity:
    return TelegramIdentity(telegram_id=telegram_id, name=name, username=None, language_code="ru")


async def test_an_invite_for_a_staff_member_links_their_record(session) -> None:
    portal = await factories.portal(session, "spb.acme.ru")
    admin = await factories.person(session, "Admin", 1)
    await factories.member(session, admin, portal, Role.ADMIN)
    vera = await factories.person(session, "Vera Sokolova", email="vera@acme.ru")
    await factories.member(session, vera, portal, position="B2B lead")
    invite = await create_invite(
        session,
        portal=portal,
        creator=admin,
        role=Role.EMPLOYEE,
        department_id=None,
        now=EPOCH,
        ttl=WEEK,
        person_id=vera.id,
    )

    result = await redeem(session, invite.token, who=identity(77, "V. S."), person=None, now=EPOCH)

    assert result.outcome is Redeemed.LINKED
    linked = await person_by_telegram_id(session, 77)
    assert linked is not None and linked.id == vera.id
    assert linked.name == "Vera Sokolova" and linked.current_portal_id == portal.id
    owed = (await session.execute(select(Notice.person_id, Notice.kind))).all()
    assert owed == [(admin.id, "invite_joined")]


async def test_linking_merges_an_account_already_on_other_portals(session) -> None:
    spb = await factories.portal(session, "spb.acme.ru")
    kzn = await factories.portal(session, "kzn.acme.ru")
    admin = await factories.person(session, "Admin", 1)
    await factories.member(session, admin, spb, Role.ADMIN)
    staff_record = await factories.person(session, "Vera", email="vera@acme.ru")
    sales = await factories.department(session, spb, "Sales", head=staff_record)
    await factories.member(session, staff_record, spb, departments=[sales])
    account = await factories.person(session, "Vera (Kazan)", 77)
    await factories.member(session, account, kzn)
    invite = await create_invite(
        session,
        portal=spb,
        creator=admin,
        role=Role.EMPLOYEE,
        department_id=None,
        now=EPOCH,
        ttl=WEEK,
        person_id=staff_record.id,
    )

    result = await redeem(session, invite.token, who=identity(77), person=account, now=EPOCH)

    assert result.outcome is Redeemed.LINKED and result.person is account
    portals = set(
        (
            await session.execute(
                select(Membership.portal_id).where(Membership.person_id == account.id)
            )
        ).scalars()
    )
    assert portals == {spb.id, kzn.id}
    assert await session.get(Person, staff_record.id) is None
    assert (await session.get(Department, sales.id)).head_person_id == account.id
    assert account.email == "vera@acme.ru"


async def test_already_a_member_changes_nothing_and_keeps_the_invite(session) -> None:
    portal = await factories.portal(session, "spb.acme.ru")
    admin = await factories.person(session, "Admin", 1)
    await factories.member(session, admin, portal, Role.ADMIN)
    invite = await create_invite(
        session,
        portal=portal,
        creator=admin,
        role=Role.ADMIN,
        department_id=None,
        now=EPOCH,
        ttl=WEEK,
    )

    result = await redeem(session, invite.token, who=identity(1), person=admin, now=EPOCH)

    assert result.outcome is Redeemed.ALREADY_MEMBER
    assert invite.used_at is None
    assert await session.scalar(select(func.count()).select_from(Notice)) == 0
    stranger = await redeem(session, invite.token, who=identity(2), person=None, now=EPOCH)
    assert stranger.outcome is Redeemed.JOINED


async def test_two_people_racing_for_one_link_only_one_gets_in(session_factory) -> None:
    async with session_factory() as session:
        portal = await factories.portal(session, "spb.acme.ru")
        admin = await factories.person(session, "Admin", 1)
        await factories.member(session, admin, portal, Role.ADMIN)
        invite = await create_invite(
            session,
            portal=portal,
            creator=admin,
            role=Role.EMPLOYEE,
            department_id=None,
            now=EPOCH,
            ttl=WEEK,
        )
        await session.commit()
        token = invite.token

    async def attempt(telegram_id: int) -> Redeemed:
        async with session_factory() as session:
            result = await redeem(
                session, token, who=identity(telegram_id), person=None, now=EPOCH
            )
            await session.commit()
            return result.outcome

    outcomes = await asyncio.gather(attempt(10), attempt(11))

    assert sorted(outcomes) == sorted([Redeemed.JOINED, Redeemed.USED])
    async with session_factory() as session:
        joined = await session.scalar(
            select(func.count()).select_from(Membership).where(Membership.portal_id == portal.id)
        )
        assert joined == 2
        joins = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "join")
        )
        assert joins == 1
