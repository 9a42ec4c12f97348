"""Syncing a portal's staff and structure from Bitrix24, against the local REST stand-in."""

import asyncio
import json
import logging
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from domain.rules import Plan, Role
from services import sync
from services.bitrix import (
    FailureKind,
    FastBitrixClient,
    RateLimits,
    WebhookError,
    parse_webhook,
)
from storage.models import (
    AuditEntry,
    Department,
    Membership,
    MembershipPhone,
    Notice,
    Person,
    PortalLink,
)
from tests import factories
from tests.bitrix_standin import BitrixStandIn, StandInUser, populate
from tests.harness import MutableClock


@pytest.fixture
async def standin():
    async with BitrixStandIn() as portal:
        yield portal


@pytest.fixture
def clock():
    return MutableClock()


async def linked_portal(session_factory, standin, clock, *, admin_email=None):
    """A portal with one admin on Telegram, linked to the stand-in."""
    async with session_factory() as session:
        portal = await factories.portal(session, "spb.acme.ru", "Acme SPb", Plan.STANDARD)
        admin = await factories.person(session, "Anna Admin", 1001, email=admin_email)
        await factories.member(session, admin, portal, Role.ADMIN)
        webhook = parse_webhook(standin.webhook_url, allow_loopback_http=True)
        await sync.link_portal(session, portal, webhook, actor=admin, now=clock())
        await session.commit()
        return portal.id, admin.id


def syncer_for(session_factory, clock, **options):
    return sync.Syncer(session_factory, clock=clock, **options)


async def synced_staff(session_factory, portal_id):
    async with session_factory() as session:
        rows = await session.execute(
            select(Membership.external_id, Person.name, Membership.role, Person.telegram_id)
            .join(Person, Person.id == Membership.person_id)
            .where(Membership.portal_id == portal_id)
        )
        return {row[0]: row[1:] for row in rows.all()}


async def structure(session_factory, portal_id):
    """external id -> (name, parent's external id, head's Bitrix24 id)."""
    async with session_factory() as session:
        departments = (
            await session.scalars(select(Department).where(Department.portal_id == portal_id))
        ).all()
        by_id = {department.id: department for department in departments}
        heads = dict(
            (
                await session.execute(
                    select(Membership.person_id, Membership.external_id).where(
                        Membership.portal_id == portal_id
                    )
                )
            ).all()
        )
        return {
            d.external_id: (
                d.name,
                by_id[d.parent_id].external_id if d.parent_id else None,
                heads.get(d.head_person_id),
            )
            for d in departments
        }


async def test_a_2000_person_portal_is_synced_with_its_structure(
    session_factory, standin, clock
) -> None:
    populate(standin, people=2000, departments=60, inactive=15, extranet=5)
    portal_id, admin_id = await linked_portal(session_factory, standin, clock)

    outcome = await syncer_for(session_factory, clock).sync(
        portal_id, trigger=sync.Trigger.LINK, actor_id=admin_id
    )

    assert outcome.ok, outcome.failure
    employees = [u for u in standin.users.values() if u.active and u.user_type == "employee"]
    staff = await synced_staff(session_factory, portal_id)
    assert {key for key in staff if key is not None} == {str(u.id) for u in employees}
    assert staff[None] == ("Anna Admin", Role.ADMIN.value, 1001)
    assert outcome.changes == sync.SyncChanges(people_added=2000, departments_added=60)
    tree = await structure(session_factory, portal_id)
    assert tree == {
        str(d.id): (
            d.name,
            str(d.parent) if d.parent else None,
            str(d.head) if d.head else None,
        )
        for d in standin.departments.values()
    }
    # 40 pages of people and 2 of departments: one batch holds 50, so two requests at most.
    assert standin.requests <= 2 and standin.refused == 0
    async with session_factory() as session:
        phones = set((await session.scalars(select(MembershipPhone.phone))).all())
        link = await session.scalar(select(PortalLink))
    assert "+79000000000" in phones and all(phone.startswith("+7") for phone in phones)
    assert link is not None and link.status == sync.OK and link.last_synced_at == clock()


async def test_a_second_sync_applies_exactly_the_changes(session_factory, standin, clock) -> None:
    populate(standin, people=120, departments=8)
    # The admin is on Bitrix24 too: found by email, they keep their role and Telegram link.
    admin_user = standin.add_user(
        StandInUser(id=9000, name="Anna", last_name="Admin", email="anna@acme.test")
    )
    portal_id, admin_id = await linked_portal(
        session_factory, standin, clock, admin_email="anna@acme.test"
    )
    syncer = syncer_for(session_factory, clock)
    first = await syncer.sync(portal_id, trigger=sync.Trigger.LINK)
    assert first.ok and first.changes is not None and first.changes.people_added == 120
    before_staff = await synced_staff(session_factory, portal_id)
    before_tree = await structure(session_factory, portal_id)
    assert before_staff["9000"] == ("Anna Admin", Role.ADMIN.value, 1001)

    heads = {d.head for d in standin.departments.values()}
    fired, gone = [user_id for user_id in sorted(standin.users) if user_id not in heads][:2]
    standin.users[fired].active = False
    del standin.users[gone]
    moved = standin.departments[5]
    moved.parent = 2 if moved.parent != 2 else 3
    new_head = next(u.id for u in standin.users.values() if u.active and u.id != 9000)
    standin.departments[4].head = new_head
    admin_user.position = "Director"

    clock.advance(hours=1)
    second = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)

    assert second.ok
    assert second.changes == sync.SyncChanges(
        people_updated=1, people_left=2, departments_updated=2
    )
    after_staff = await synced_staff(session_factory, portal_id)
    assert set(before_staff) - set(after_staff) == {str(fired), str(gone)}
    assert after_staff["9000"] == ("Anna Admin", Role.ADMIN.value, 1001)
    after_tree = await structure(session_factory, portal_id)
    changed = {key for key in after_tree if after_tree[key] != before_tree.get(key)}
    assert changed == {"5", "4"}
    assert after_tree["5"][1] == str(moved.parent) and after_tree["4"][2] == str(new_head)
    async with session_factory() as session:
        # People who left keep their person record; only the membership went.
        assert await session.scalar(select(func.count()).select_from(Person)) == 121
        admin = await session.get(Person, admin_id)
        assert admin is not None and admin.telegram_id == 1001
        entries = (await session.scalars(select(AuditEntry.details))).all()
    assert any('"people_left": 2' in entry for entry in entries)

    third = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)
    assert third.changes == sync.SyncChanges()


async def test_a_failure_half_way_keeps_the_previous_data_and_tells_admins_once(
    session_factory, standin, clock
) -> None:
    populate(standin, people=600, departments=12)
    portal_id, admin_id = await linked_portal(session_factory, standin, clock)
    # Five commands a batch: a read of 600 people takes four requests.
    syncer = syncer_for(session_factory, clock, commands_per_batch=5)
    assert (await syncer.sync(portal_id, trigger=sync.Trigger.LINK)).ok
    before_staff = await synced_staff(session_factory, portal_id)
    before_tree = await structure(session_factory, portal_id)

    for user_id in sorted(standin.users)[:40]:
        del standin.users[user_id]
    standin.departments[3].name = "Renamed"
    start = standin.requests
    # The third request of the next read gets a cut-off answer.
    standin.fail_request(3, 200, '{"result": {"result": {"c0": [{"ID": "5"')
    clock.advance(hours=1)
    failed = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)

    assert not failed.ok and failed.failure is not None
    assert failed.failure.kind is FailureKind.MALFORMED
    assert standin.requests - start == 3
    assert await synced_staff(session_factory, portal_id) == before_staff
    assert await structure(session_factory, portal_id) == before_tree

    # Failing again an hour later: the admins were told once.
    standin.revoked = True
    clock.advance(hours=1)
    again = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)
    assert again.failure is not None and again.failure.kind is FailureKind.REVOKED
    async with session_factory() as session:
        link = await session.scalar(select(PortalLink))
        kinds = (await session.scalars(select(Notice.kind))).all()
    assert link is not None and link.status == sync.FAILING
    assert link.failing_since == clock.now - timedelta(hours=1)
    assert "deleted or lost its rights" in (link.failure_reason or "")
    assert kinds == [sync.FAILED_NOTICE]

    standin.revoked = False
    clock.advance(hours=1)
    recovered = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)
    assert recovered.ok and recovered.recovered
    assert recovered.changes is not None and recovered.changes.people_left == 40
    async with session_factory() as session:
        kinds = (await session.scalars(select(Notice.kind).order_by(Notice.id))).all()
        link = await session.scalar(select(PortalLink))
    assert kinds == [sync.FAILED_NOTICE, sync.RECOVERED_NOTICE]
    assert link is not None and link.status == sync.OK and link.failing_since is None
    assert admin_id


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        ("revoked", FailureKind.REVOKED),
        ("token_expired", FailureKind.EXPIRED),
        ("rest_closed", FailureKind.REST_CLOSED),
    ],
)
async def test_a_refused_webhook_fails_in_words_and_never_shows_the_secret(
    session_factory, standin, clock, caplog, setup, kind
) -> None:
    populate(standin, people=30, departments=3)
    portal_id, _admin = await linked_portal(session_factory, standin, clock)
    setattr(standin, setup, True)
    caplog.set_level(logging.DEBUG)

    outcome = await syncer_for(session_factory, clock).sync(portal_id, trigger=sync.Trigger.BOT)

    assert outcome.failure is not None and outcome.failure.kind is kind
    assert await synced_staff(session_factory, portal_id) == {None: ("Anna Admin", "admin", 1001)}
    async with session_factory() as session:
        details = " ".join((await session.scalars(select(AuditEntry.details))).all())
    assert "/rest/1/***" in details
    assert standin.secret not in details
    assert standin.secret not in caplog.text
    assert standin.secret not in str(outcome.failure)


async def test_query_limit_exceeded_is_waited_out(session_factory, standin, clock) -> None:
    populate(standin, people=60, departments=2)
    portal_id, _admin = await linked_portal(session_factory, standin, clock)
    standin.fail_request(
        1, 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    )

    outcome = await syncer_for(session_factory, clock).sync(portal_id, trigger=sync.Trigger.BOT)

    assert outcome.ok and outcome.staff == 60


async def test_the_rate_limit_is_never_exceeded(session_factory, clock) -> None:
    limits = RateLimits(per_second=25.0, burst=4)
    async with BitrixStandIn(per_second=limits.per_second, burst=limits.burst) as standin:
        populate(standin, people=2000, departments=10)
        portal_id, _admin = await linked_portal(session_factory, standin, clock)
        syncer = syncer_for(
            session_factory,
            clock,
            commands_per_batch=3,
            client_factory=lambda webhook, _limits: FastBitrixClient(webhook, limits),
        )
        outcome = await syncer.sync(portal_id, trigger=sync.Trigger.BOT)

        assert outcome.ok and outcome.staff == 2000
        assert standin.requests > 3 * limits.burst
        assert standin.refused == 0

        # The stand-in does refuse a client that does not pace itself.
        async with aiohttp.ClientSession() as http:
            answers = await asyncio.gather(
                *(http.post(standin.webhook_url + "profile", json={}) for _ in range(10))
            )
            for answer in answers:
                answer.release()
        assert standin.refused > 0
        assert {answer.status for answer in answers} == {200, 503}


def test_only_https_webhooks_are_accepted_unless_loopback_is_allowed() -> None:
    hook = parse_webhook("https://Acme.Bitrix24.ru/rest/12/abcdef123456/")
    assert hook.url == "https://acme.bitrix24.ru/rest/12/abcdef123456/"
    assert hook.masked == "acme.bitrix24.ru/rest/12/***" == str(hook)
    assert "abcdef123456" not in repr(hook)
    for wrong in (
        "http://acme.bitrix24.ru/rest/12/abcdef123456/",
        "http://127.0.0.1:8080/rest/1/abcdef123456/",
        "https://acme.bitrix24.ru/rest/abcdef123456/",
        "https://acme.bitrix24.ru/rest/12/abcdef123456/user.get?x=1",
        "acme.bitrix24.ru/rest/12/abcdef123456/",
    ):
        with pytest.raises(WebhookError):
            parse_webhook(wrong)
    loopback = parse_webhook("http://127.0.0.1:8080/rest/1/abcdef123456", allow_loopback_http=True)
    assert loopback.url == "http://127.0.0.1:8080/rest/1/abcdef123456/"
    with pytest.raises(WebhookError):
        parse_webhook("http://example.com/rest/1/abcdef123456/", allow_loopback_http=True)


@pytest.fixture
def loopback_webhooks(monkeypatch):
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP_WEBHOOKS", "true")


async def test_an_admin_links_in_the_bot_and_the_url_is_deleted(
    loopback_webhooks, standin, running_bot
) -> None:
    populate(standin, people=40, departments=4)
    await running_bot.seed(
        {
            "portals": [{"address": "spb.acme.ru", "name": "Acme SPb", "plan": "standard"}],
            "people": [
                {
                    "telegram_id": 1001,
                    "name": "Anna",
                    "memberships": [{"portal": "spb.acme.ru", "role": "admin"}],
                },
                {
                    "telegram_id": 1002,
                    "name": "Boris",
                    "memberships": [{"portal": "spb.acme.ru", "role": "employee"}],
                },
            ],
        }
    )
    api = running_bot.api
    anna = api.user(1001, "Anna", language_code="en")
    boris = api.user(1002, "Boris", language_code="en")
    syncer = running_bot.app.dispatcher.workflow_data["syncer"]

    refused = await api.send(boris, f"/link {standin.webhook_url}")
    assert "administrators" in (await api.reply(boris)).text
    assert api._incoming_message(1002, refused)["_deleted"]

    sent = await api.send(anna, f"/link {standin.webhook_url}")
    status = await api.reply(anna)
    await running_bot.settle()
    await syncer.wait_idle()

    assert api._incoming_message(1001, sent)["_deleted"]
    # One status message: linked, then the progress, then the outcome.
    assert "/rest/1/***" in status.previous_texts[0]
    assert "40 of 40 people read" in status.previous_texts[-1]
    final = api.last(anna)
    assert "is synced from Bitrix24" in final.text and "People: 40 (40 added" in final.text
    shown = [text for m in api.messages(anna) for text in (m.text, *m.previous_texts)]
    assert all(standin.secret not in text for text in shown)

    # The menu now has "sync now" for the admin, not for the employee.
    await api.send(anna, "/portals")
    listing = await api.reply(anna)
    await api.tap(anna, listing, "Acme SPb")
    menu = await api.reply(anna)
    assert "🔄 Sync now from Bitrix24" in menu.button_texts()
    await api.tap(anna, menu, "Sync now")
    await running_bot.settle()
    await syncer.wait_idle()
    assert "People: 40 (0 added, 0 updated, 0 left)" in api.last(anna).text
    await api.send(boris, "/portals")
    listing = await api.reply(boris)
    await api.tap(boris, listing, "Acme SPb")
    assert "🔄 Sync now from Bitrix24" not in (await api.reply(boris)).button_texts()
    async with running_bot.session_factory() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
        details = json.dumps((await session.scalars(select(AuditEntry.details))).all())
    assert actions.count(sync.SYNC_ACTION) == 2 and sync.LINK_ACTION in actions
    assert standin.secret not in details
