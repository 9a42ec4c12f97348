"""Branch administration end to end: the real bot polling the Bot API stand-in over HTTP.

The permission table of DOMAIN.md through the bot, each refusal with its message, connecting,
creating and disconnecting as each kind of person, forged buttons, and the notices each
recipient gets from the outbox.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from domain.rules import GRACE_LENGTH, Plan, Role
from services import network
from storage.models import AuditEntry, Membership, Notice, Person, Portal
from tests import factories
from tests.botapi import FakeUser, SentMessage
from tests.harness import RunningBot

pytestmark = pytest.mark.e2e

NOT_VISIBLE = "No portal of yours has that address."
NOT_ADMIN = "Only the portal's administrators can do that."
NOT_ADMIN_OF_BOTH = (
    "You must be an administrator of both the head portal and the portal to connect."
)
NOT_HEAD_ADMIN = "Only the head portal's administrators can do that."
NOT_ON_STAFF = "You are not on any portal's staff yet."
ACTORS = ("stranger", "employee", "branch_admin", "head_admin", "both")


@dataclass
class Ids:
    head: int
    branch: int
    loner: int
    fresh_free: int
    other_head: int
    other_branch: int
    employee: int
    branch_admin: int
    head_admin: int
    both: int
    unstarted: int
    vera: int


@dataclass
class People:
    stranger: FakeUser
    employee: FakeUser
    branch_admin: FakeUser
    head_admin: FakeUser
    both: FakeUser
    vera: FakeUser


async def seed(bot: RunningBot) -> Ids:
    """The network of the rules' table: a head, its branch, portals around it, five actors."""
    async with bot.session_factory() as session:
        head = await factories.portal(session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True)
        branch = await factories.portal(session, "spb.acme.ru", "Acme SPb", head=head)
        loner = await factories.portal(session, "nsk.acme.ru", "Acme <Nsk>")
        fresh_free = await factories.portal(session, "kzn.acme.ru", "Acme Kzn", Plan.FREE)
        other_head = await factories.portal(
            session, "globex.ru", "Globex", Plan.ENTERPRISE, is_head=True
        )
        other_branch = await factories.portal(
            session, "msk.globex.ru", "Globex Msk", head=other_head
        )

        employee = await factories.person(session, "Employee", 901)
        branch_admin = await factories.person(session, "Branch Admin", 902)
        head_admin = await factories.person(session, "Head Admin", 903)
        both = await factories.person(session, "Admin of Both", 904)
        unstarted = await factories.person(session, "Not Started", 905, started=False)
        vera = await factories.person(session, "Vera", 906, language="ru")
        for where in (head, branch, loner):
            await factories.member(session, employee, where, Role.EMPLOYEE)
        for where in (branch, loner, fresh_free):
            await factories.member(session, branch_admin, where, Role.ADMIN)
        await factories.member(session, head_admin, head, Role.ADMIN)
        for where in (head, branch, loner, fresh_free):
            await factories.member(session, both, where, Role.ADMIN)
        for where in (branch, fresh_free):
            await factories.member(session, unstarted, where, Role.ADMIN)
        await factories.member(session, vera, fresh_free, Role.ADMIN)
        await factories.member(session, vera, other_branch, Role.ADMIN)
        await session.commit()
        return Ids(
            head.id,
            branch.id,
            loner.id,
            fresh_free.id,
            other_head.id,
            other_branch.id,
            employee.id,
            branch_admin.id,
            head_admin.id,
            both.id,
            unstarted.id,
            vera.id,
        )


async def people(bot: RunningBot) -> People:
    """The actors on Telegram's side; each starts the bot, so they can be written to."""
    api = bot.api
    found = People(
        stranger=api.user(900, "Stranger"),
        employee=api.user(901, "Employee"),
        branch_admin=api.user(902, "Branch", last_name="Admin"),
        head_admin=api.user(903, "Head", last_name="Admin"),
        both=api.user(904, "Both"),
        vera=api.user(906, "Вера", language_code="ru"),
    )
    for user in (found.stranger, found.employee, found.branch_admin, found.head_admin, found.both):
        await api.send(user, "/start")
        await api.replies(user, count=2)
    await api.send(found.vera, "/start")
    await api.replies(found.vera, count=2)
    return found


async def answer_to(bot: RunningBot, user: FakeUser, text: str) -> SentMessage:
    await bot.api.send(user, text)
    return await bot.api.reply(user)


async def forged_tap(bot: RunningBot, user: FakeUser, data: str) -> tuple[str | None, bool]:
    """A tap with callback data of the person's making, on the bot's last message to them."""
    query = await bot.api.press(user, bot.api.last(user), data, check=False)
    answer = await bot.api.wait_answered(query)
    return answer.text, answer.show_alert


async def notices_of(bot: RunningBot) -> list[Notice]:
    await bot.settle()
    async with bot.session_factory() as session:
        return list((await session.execute(select(Notice).order_by(Notice.id))).scalars())


async def portal_at(bot: RunningBot, address: str) -> Portal | None:
    """The portal as stored once the bot has committed what it was doing."""
    await bot.settle()
    async with bot.session_factory() as session:
        return await network.portal_by_address(session, address)


# The permission table of DOMAIN.md, through the bot. None means the action is allowed, and
# the text is what its answer shows. The bot names no head to someone on no head's staff, so
# where the rules say "not visible" because the head is unseen, it says only head admins may.


async def test_table_open_the_branchs_menu(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_VISIBLE,
        "employee": None,
        "branch_admin": None,
        "head_admin": NOT_VISIBLE,
        "both": None,
    }
    for actor, refusal in expected.items():
        user = getattr(cast, actor)
        await answer_to(running_bot, user, "/portals")
        text, alert = await forged_tap(running_bot, user, f"p:m:{ids.branch}")
        if refusal is None:
            menu = await running_bot.api.reply(user)
            assert "Acme SPb" in menu.text, actor
            assert any("Go to this portal" in label for label in menu.button_texts()), actor
        else:
            assert (text, alert) == (refusal, True), actor


async def test_table_read_the_branchs_staff(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_VISIBLE,
        "employee": None,
        "branch_admin": None,
        "head_admin": NOT_VISIBLE,
        "both": None,
    }
    for actor, refusal in expected.items():
        user = getattr(cast, actor)
        await answer_to(running_bot, user, "/portals")
        text, alert = await forged_tap(running_bot, user, f"p:s:{ids.branch}")
        if refusal is None:
            assert "people on the staff" in (await running_bot.api.reply(user)).text, actor
        else:
            assert (text, alert) == (refusal, True), actor


async def test_table_invite_to_the_branch(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_VISIBLE,
        "employee": NOT_ADMIN,
        "branch_admin": None,
        "head_admin": NOT_VISIBLE,
        "both": None,
    }
    for actor, refusal in expected.items():
        user = getattr(cast, actor)
        await answer_to(running_bot, user, "/portals")
        text, alert = await forged_tap(running_bot, user, f"p:i:{ids.branch}")
        if refusal is None:
            assert "Invite people to" in (await running_bot.api.reply(user)).text, actor
        else:
            assert (text, alert) == (refusal, True), actor


async def test_table_connect_a_portal(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_VISIBLE,
        "employee": NOT_ADMIN_OF_BOTH,
        "branch_admin": NOT_HEAD_ADMIN,
        "head_admin": NOT_VISIBLE,
        "both": None,
    }
    for actor, refusal in expected.items():
        reply = await answer_to(running_bot, getattr(cast, actor), "/connect nsk.acme.ru")
        if refusal is None:
            assert reply.text.startswith("Connect Acme <Nsk> (nsk.acme.ru) to the network of")
            assert "Connect" in reply.button_texts()[0]
        else:
            assert reply.text == refusal, actor
    loner = await portal_at(running_bot, "nsk.acme.ru")
    assert loner is not None and loner.head_id is None


async def test_table_create_a_branch(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_ON_STAFF,
        "employee": NOT_ADMIN,
        "branch_admin": NOT_HEAD_ADMIN,
        "head_admin": None,
        "both": None,
    }
    for actor, refusal in expected.items():
        address = f"new-{actor.replace('_', '-')}.acme.ru"
        reply = await answer_to(running_bot, getattr(cast, actor), f"/newbranch New | {address}")
        created = await portal_at(running_bot, address)
        if refusal is None:
            assert "is created and connected to the network of Acme HQ" in reply.text, actor
            assert created is not None and created.plan == "free"
        else:
            assert reply.text.startswith(refusal), actor
            assert created is None, actor


async def test_table_disconnect_the_branch(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_VISIBLE,
        "employee": NOT_HEAD_ADMIN,
        "branch_admin": NOT_HEAD_ADMIN,
        "head_admin": None,
        "both": None,
    }
    for actor, refusal in expected.items():
        reply = await answer_to(running_bot, getattr(cast, actor), "/disconnect spb.acme.ru")
        if refusal is None:
            assert reply.text.startswith("Disconnect Acme SPb (spb.acme.ru) from the network?")
        else:
            assert reply.text == refusal, actor


async def test_table_list_the_branches(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)
    expected = {
        "stranger": NOT_ON_STAFF,
        "employee": NOT_HEAD_ADMIN,
        "branch_admin": NOT_HEAD_ADMIN,
        "head_admin": None,
        "both": None,
    }
    for actor, refusal in expected.items():
        reply = await answer_to(running_bot, getattr(cast, actor), "/branches")
        if refusal is None:
            assert reply.text.startswith("Branches of Acme HQ · 1 branch"), actor
        else:
            assert reply.text.startswith(refusal), actor


# Connecting.


async def test_connect_a_free_portal_from_the_keyboard(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api

    offer = await answer_to(running_bot, cast.both, "/connect")
    assert offer.text.startswith("Which portal do you connect to the network of Acme HQ?")
    assert "Acme SPb — That portal is already in a network" in offer.text
    assert [label for label in offer.button_texts() if "Acme" in label] == [
        "Acme <Nsk>",
        "Acme Kzn",
    ]

    await api.tap(cast.both, offer, "Acme Kzn")
    question = await api.reply(cast.both)
    assert "Plan: Free" in question.text
    assert "a 15-day demo starts now and ends on 16.12.2026 12:00 (UTC+03:00)" in question.text

    await api.tap(cast.both, question, "Connect")
    done = await api.reply(cast.both)
    assert done.text.startswith("✅ Acme Kzn is now a branch of the network of Acme HQ.")
    assert "Its 15-day demo ends on 16.12.2026 12:00 (UTC+03:00)." in done.text
    await running_bot.settle()
    async with running_bot.session_factory() as session:
        kzn = await session.get(Portal, ids.fresh_free)
        assert kzn is not None and kzn.head_id == ids.head

    # The branch's other admins are told, each in their language; the actor has the answer.
    mark = api.mark()
    assert await running_bot.deliver_notices() == 2
    messages = {message.chat_id: message for message in await api.replies(since=mark, count=2)}
    told = {chat_id: message.text for chat_id, message in messages.items()}
    assert set(told) == {902, 906}
    assert messages[902].button("Acme Kzn")["callback_data"] == f"p:m:{ids.fresh_free}"
    assert told[902] == (
        "Acme Kzn (kzn.acme.ru) is now a branch of a network.\n"
        "Connected by Admin of Both.\n"
        "Plan: Free\n"
        "A 15-day demo has started; it ends on 16.12.2026 12:00 (UTC+03:00)."
    )
    assert "Тариф: Бесплатный" in told[906]
    # Someone who never started the bot is owed it too, and shown as unreachable.
    statuses = {notice.person_id: notice.status for notice in await notices_of(running_bot)}
    assert statuses == {ids.branch_admin: "sent", ids.vera: "sent", ids.unstarted: "unreachable"}


async def test_connect_refusals_say_why(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    async with running_bot.session_factory() as session:
        former = await factories.portal(
            session, "ekb.acme.ru", "Acme Ekb", Plan.FREE, ever_in_network=True
        )
        both = await session.get(Person, ids.both)
        assert both is not None
        await factories.member(session, both, former, Role.ADMIN)
        initech = await factories.portal(
            session, "initech.ru", "Initech", Plan.ENTERPRISE, is_head=True
        )
        await factories.member(session, both, initech, Role.ADMIN)
        # Of the two heads they administer, the current portal says which one /connect uses.
        both.current_portal_id = ids.head
        await session.commit()

    cases = {
        "/connect spb.acme.ru": (
            "That portal is already in a network: it must be disconnected first."
        ),
        "/connect ekb.acme.ru": (
            "That portal was in a network before and is on the Free plan: it must move to a "
            "commercial plan before it can be connected again."
        ),
        "/connect initech.ru": "That portal is the head of a network itself.",
        "/connect acme.ru": "The head portal cannot be connected to itself.",
        # Another network's branch, and an address nobody has: the same answer.
        "/connect msk.globex.ru": NOT_VISIBLE,
        "/connect nowhere.example.ru": NOT_VISIBLE,
        "/connect not an address": NOT_VISIBLE,
    }
    for command, message in cases.items():
        assert (await answer_to(running_bot, cast.both, command)).text == message, command


async def test_a_forged_connect_changes_nothing(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    await answer_to(running_bot, cast.head_admin, "/branches")

    for data in (
        f"nw:k:{ids.head}:{ids.other_branch}:0",
        f"nw:k:{ids.head}:{ids.loner}:0",
        f"nw:k:{ids.other_head}:{ids.loner}:0",
        f"nw:c:{ids.head}:999999:0",
    ):
        text, alert = await forged_tap(running_bot, cast.head_admin, data)
        assert (text, alert) == (NOT_VISIBLE, True), data
    loner = await portal_at(running_bot, "nsk.acme.ru")
    other = await portal_at(running_bot, "msk.globex.ru")
    assert loner is not None and loner.head_id is None
    assert other is not None and other.head_id == ids.other_head


# Creating a branch.


async def test_new_branch_step_by_step(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    admin = cast.head_admin

    asked = await answer_to(running_bot, admin, "/newbranch")
    assert asked.text == (
        "A new branch of Acme HQ.\nWhat is the new portal called? (/cancel to stop)"
    )
    empty = await answer_to(running_bot, admin, "   ")
    assert empty.text == "The name cannot be empty.\nSend it again, or /cancel."
    reply = await answer_to(running_bot, admin, "Acme <Omsk> & Co")
    assert reply.text.startswith("Its address?")
    wrong = {
        "http://omsk.acme.ru": "Give the address as a host name or an https:// address.",
        "10.1.1.1": "The address must be a host name, not an IP address.",
        "https://SPB.acme.ru/": "A portal with that address already exists.",
    }
    for text, message in wrong.items():
        answer = await answer_to(running_bot, admin, text)
        assert answer.text == message + "\nSend it again, or /cancel.", text

    done = await answer_to(running_bot, admin, "https://Omsk.Acme.ru/")
    assert done.text == (
        "✅ Acme <Omsk> & Co (omsk.acme.ru) is created and connected to the network of "
        "Acme HQ.\nIt is on the Free plan with a 15-day demo until 16.12.2026 12:00 "
        "(UTC+03:00).\nYou are its administrator: /invite brings its staff in."
    )
    # The name is sent as given, marked up by entities, never pasted into HTML.
    assert done.entity_texts("bold") == ["Acme <Omsk> & Co", "Acme HQ"]
    omsk = await portal_at(running_bot, "omsk.acme.ru")
    assert omsk is not None and (omsk.head_id, omsk.plan) == (ids.head, "free")
    async with running_bot.session_factory() as session:
        role = await session.scalar(
            select(Membership.role).where(
                Membership.portal_id == omsk.id, Membership.person_id == ids.head_admin
            )
        )
    assert role == "admin"

    # The dialog is over: the next text is just text.
    after = await answer_to(running_bot, admin, "Another name")
    assert after.text == "I answer commands. /help lists them."


async def test_new_branch_can_be_cancelled(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)

    await answer_to(running_bot, cast.both, "/newbranch Acme Tver")
    assert (await answer_to(running_bot, cast.both, "/cancel")).text == "Cancelled."
    assert (await answer_to(running_bot, cast.both, "tver.acme.ru")).text == (
        "I answer commands. /help lists them."
    )
    assert await portal_at(running_bot, "tver.acme.ru") is None


# Disconnecting.


async def test_disconnect_from_the_list_and_a_late_second_confirmation(
    running_bot: RunningBot,
) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api

    # Admin of both opens the confirmation from the branch's menu and waits.
    await answer_to(running_bot, cast.both, "/portals")
    listing = api.last(cast.both)
    await api.tap(cast.both, listing, "Acme SPb")
    menu = await api.reply(cast.both)
    await api.tap(cast.both, menu, "Disconnect from the network")
    waiting = await api.reply(cast.both)
    assert waiting.text.startswith("Disconnect Acme SPb (spb.acme.ru) from the network?")

    # The head admin disconnects it from /disconnect's list.
    choice = await answer_to(running_bot, cast.head_admin, "/disconnect")
    assert choice.text.startswith("Branches of Acme HQ · 1 branch")
    await api.tap(cast.head_admin, choice, "Acme SPb")
    question = await api.reply(cast.head_admin)
    assert question.text.startswith("Disconnect Acme SPb (spb.acme.ru) from the network?")
    query = await api.tap(cast.head_admin, question, "⛔ Disconnect")
    done = await api.reply(cast.head_admin)
    assert done.text.startswith(
        "⛔ Acme SPb is disconnected from the network: it is a standalone portal now."
    )
    assert (await api.wait_answered(query)).text == "Disconnected."

    # The second confirmation comes late: it is done already, and nothing happens twice.
    query = await api.tap(cast.both, waiting, "⛔ Disconnect")
    late = await api.reply(cast.both)
    assert late.text == "Acme SPb was already disconnected from the network."
    assert (await api.wait_answered(query)).text == "Already done."

    mark = api.mark()
    assert await running_bot.deliver_notices() == 2
    told = {message.chat_id: message.text for message in await api.replies(since=mark, count=2)}
    assert told == {
        902: (
            "⛔ Acme SPb (spb.acme.ru) was disconnected from its network.\n"
            "Disconnected by an administrator of the head portal.\n"
            "It is a standalone portal now."
        ),
        904: (
            "⛔ Acme SPb (spb.acme.ru) was disconnected from the network of Acme HQ.\n"
            "Disconnected by Head Admin.\n"
            "It is a standalone portal now."
        ),
    }
    statuses = {notice.person_id: notice.status for notice in await notices_of(running_bot)}
    assert statuses == {ids.branch_admin: "sent", ids.both: "sent", ids.unstarted: "unreachable"}
    await api.assert_silent(cast.head_admin, since=mark)

    log = await answer_to(running_bot, cast.head_admin, "/audit")
    assert log.text.startswith("Latest in the log of the network of Acme HQ")
    assert "Head Admin (tg 903) · disconnected · spb.acme.ru" in log.text
    assert "Admin of Both (tg 904) · disconnected · spb.acme.ru · already done" in log.text


async def test_branch_admins_cannot_disconnect_even_with_a_forged_button(
    running_bot: RunningBot,
) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    await answer_to(running_bot, cast.branch_admin, "/portals")

    for data in (f"p:d:{ids.branch}", f"nw:d:{ids.head}:{ids.branch}:0"):
        text, _alert = await forged_tap(running_bot, cast.branch_admin, data)
        assert text == NOT_HEAD_ADMIN, data
    text, _alert = await forged_tap(
        running_bot, cast.branch_admin, f"nw:y:{ids.head}:{ids.branch}:0"
    )
    assert text == NOT_HEAD_ADMIN
    branch = await portal_at(running_bot, "spb.acme.ru")
    assert branch is not None and branch.head_id == ids.head


async def test_a_forged_disconnect_of_another_networks_branch(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    await answer_to(running_bot, cast.head_admin, "/branches")

    for data in (
        f"nw:y:{ids.head}:{ids.other_branch}:0",
        f"nw:y:{ids.other_head}:{ids.other_branch}:0",
        f"nw:d:{ids.head}:{ids.other_branch}:0",
        f"p:d:{ids.other_branch}",
        f"nw:y:{ids.head}:999999:0",
        f"nw:b:{ids.other_head}:0:0",
    ):
        text, alert = await forged_tap(running_bot, cast.head_admin, data)
        assert (text, alert) == (NOT_VISIBLE, True), data
    other = await portal_at(running_bot, "msk.globex.ru")
    assert other is not None and other.head_id == ids.other_head
    assert await notices_of(running_bot) == []


# Listing the network.


async def test_branches_show_plan_demo_and_incompatibility_in_pages(
    running_bot: RunningBot,
) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    now = running_bot.clock()
    async with running_bot.session_factory() as session:
        head = await session.get(Portal, ids.head)
        assert head is not None
        await factories.portal(
            session,
            "a-demo.acme.ru",
            "A demo",
            Plan.FREE,
            head=head,
            demo_until=now + timedelta(days=3),
        )
        await factories.portal(
            session,
            "a-late.acme.ru",
            "A late",
            Plan.FREE,
            head=head,
            incompatible_until=now + GRACE_LENGTH,
        )
        for number in range(10):
            await factories.portal(session, f"z{number}.acme.ru", f"Z {number}", head=head)
        await session.commit()

    api = running_bot.api
    first = await answer_to(running_bot, cast.head_admin, "/branches")
    assert first.text.startswith("Branches of Acme HQ · 13 branches · page 1 of 2")
    assert (
        "1. 🏢 A demo\n    a-demo.acme.ru · Free\n"
        "    Demo until 04.12.2026 12:00 (UTC+03:00) (3 days left)"
    ) in first.text
    assert (
        "2. ⚠️ A late\n    a-late.acme.ru · Free\n"
        "    ⚠️ Not compatible: disconnected on 16.12.2026 12:00 (UTC+03:00) (15 days left)"
    ) in first.text
    assert "spb.acme.ru · Standard" in first.text

    await api.tap(cast.head_admin, first, "▶️")
    second = await api.reply(cast.head_admin)
    assert "page 2 of 2" in second.text and "Z 9" in second.text

    await api.tap(cast.head_admin, second, "Z 9")
    card = await api.reply(cast.head_admin)
    assert card.text.startswith("🏢 Z 9\n    z9.acme.ru · Standard")
    assert any("Disconnect" in label for label in card.button_texts())


# Plan changes and timed state changes, told by the running bot.


async def test_plan_changes_and_the_grace_are_told_by_the_bot(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api
    now = running_bot.clock()

    # What `branchbot portal set-plan spb.acme.ru free` does, on the bot's database.
    async with running_bot.session_factory() as session:
        await network.set_plan(session, "spb.acme.ru", Plan.FREE, now)
        await session.commit()
    mark = api.mark()
    assert await running_bot.deliver_notices() == 3
    told = {message.chat_id: message.text for message in await api.replies(since=mark, count=3)}
    assert set(told) == {902, 903, 904}
    assert told[903] == (
        "⚠️ Acme SPb (spb.acme.ru) is not compatible with the network.\n"
        "It has moved to the Free plan.\n"
        "Unless it moves to a commercial plan, it will be disconnected on 16.12.2026 12:00 "
        "(UTC+03:00)."
    )
    # The head admin is not on the branch's staff: the button opens its card in the network.
    await api.tap(cast.head_admin, api.last(cast.head_admin), "Acme SPb")
    card = await api.reply(cast.head_admin)
    assert card.text.startswith("⚠️ Acme SPb\n    spb.acme.ru · Free\n    ⚠️ Not compatible")

    listing = await answer_to(running_bot, cast.head_admin, "/branches")
    assert "⚠️ Acme SPb" in listing.text

    # The grace runs out: the scheduler's call disconnects it, and everyone concerned is told.
    running_bot.clock.advance(days=15)
    async with running_bot.session_factory() as session:
        assert await network.expire_grace(session, running_bot.clock()) == [ids.branch]
        await session.commit()
    mark = api.mark()
    assert await running_bot.deliver_notices() == 3
    told = {message.chat_id: message.text for message in await api.replies(since=mark, count=3)}
    assert told[903] == (
        "⛔ Acme SPb (spb.acme.ru) was disconnected from the network of Acme HQ.\n"
        "It did not move to a commercial plan within the 15 days it had.\n"
        "It is a standalone portal now."
    )
    assert told[902].startswith("⛔ Acme SPb (spb.acme.ru) was disconnected from its network.")


async def test_a_demo_ending_and_a_move_up_are_told(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api
    await answer_to(running_bot, cast.both, "/connect kzn.acme.ru")
    await api.tap(cast.both, api.last(cast.both), "Connect")
    await api.reply(cast.both)
    await running_bot.deliver_notices()

    running_bot.clock.advance(days=15)
    async with running_bot.session_factory() as session:
        assert await network.expire_demos(session, running_bot.clock()) == [ids.fresh_free]
        await session.commit()
    mark = api.mark()
    # Branch admins (two started, one not) and the head admins: each once.
    assert await running_bot.deliver_notices() == 4
    told = {message.chat_id: message.text for message in await api.replies(since=mark, count=4)}
    assert set(told) == {902, 903, 904, 906}
    assert "Its demo has ended and it is still on the Free plan." in told[903]
    assert "31.12.2026 12:00 (UTC+03:00)" in told[903]

    async with running_bot.session_factory() as session:
        await network.set_plan(session, "kzn.acme.ru", Plan.BASIC, running_bot.clock())
        await session.commit()
    mark = api.mark()
    assert await running_bot.deliver_notices() == 4
    told = {message.chat_id: message.text for message in await api.replies(since=mark, count=4)}
    assert told[903] == (
        "✅ Acme Kzn (kzn.acme.ru) is compatible with the network again: it is on the Basic "
        "plan now."
    )


# Staff management.


async def test_an_admin_removes_someone_who_loses_access_at_once(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api

    # The employee has the branch's menu open.
    await answer_to(running_bot, cast.employee, "/portals")
    await api.tap(cast.employee, api.last(cast.employee), "Acme SPb")
    employee_menu = await api.reply(cast.employee)

    ask = await answer_to(running_bot, cast.branch_admin, "/members")
    assert ask.text == "Whose staff do you manage?"
    await api.tap(cast.branch_admin, ask, "Acme SPb")
    listing = await api.reply(cast.branch_admin)
    assert listing.text.startswith("Acme SPb · 4 people on the staff")
    await api.tap(cast.branch_admin, listing, "Employee")
    card = await api.reply(cast.branch_admin)
    assert card.text.startswith("Employee\nRole: employee\nTelegram: linked.")
    await api.tap(cast.branch_admin, card, "Remove from the staff")
    question = await api.reply(cast.branch_admin)
    assert question.text == (
        "Remove Employee from the staff of Acme SPb?\nThey lose access to this portal at once."
    )
    await api.tap(cast.branch_admin, question, "Confirm")
    done = await api.reply(cast.branch_admin)
    assert done.text == "✅ Employee is no longer on the staff of Acme SPb."

    query = await api.tap(cast.employee, employee_menu, "Staff")
    answer = await api.wait_answered(query)
    assert (answer.text, answer.show_alert) == (NOT_VISIBLE, True)
    await running_bot.settle()
    async with running_bot.session_factory() as session:
        assert await network.member_card(session, ids.branch, ids.employee) is None


async def test_an_unlinked_person_is_a_stranger_on_their_next_tap(
    running_bot: RunningBot,
) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api
    await answer_to(running_bot, cast.employee, "/portals")
    portals = api.last(cast.employee)

    await answer_to(running_bot, cast.both, "/portals")
    await api.tap(cast.both, api.last(cast.both), "Acme SPb")
    await api.tap(cast.both, await api.reply(cast.both), "Go to this portal")
    await api.reply(cast.both)
    await answer_to(running_bot, cast.both, "/members")
    listing = api.last(cast.both)
    assert listing.text.startswith("Acme SPb")
    await api.tap(cast.both, listing, "Employee")
    await api.tap(cast.both, await api.reply(cast.both), "Unlink the Telegram account")
    await api.tap(cast.both, await api.reply(cast.both), "Confirm")
    done = await api.reply(cast.both)
    assert done.text == "✅ Employee no longer has a Telegram account linked on Acme SPb."

    query = await api.tap(cast.employee, portals, "Acme SPb")
    assert (await api.wait_answered(query)).text == NOT_VISIBLE
    assert (await answer_to(running_bot, cast.employee, "/portals")).text.startswith(NOT_ON_STAFF)
    await running_bot.settle()
    async with running_bot.session_factory() as session:
        card = await network.member_card(session, ids.branch, ids.employee)
    assert card is not None and not card.linked


async def test_the_last_admin_stays_an_admin(running_bot: RunningBot) -> None:
    await seed(running_bot)
    cast = await people(running_bot)
    api = running_bot.api

    # The head admin is the head's only other admin besides the admin of both.
    await answer_to(running_bot, cast.head_admin, "/members")
    listing = api.last(cast.head_admin)
    await api.tap(cast.head_admin, listing, "Admin of Both")
    card = await api.reply(cast.head_admin)
    await api.tap(cast.head_admin, card, "Make employee")
    await api.tap(cast.head_admin, await api.reply(cast.head_admin), "Confirm")
    assert (
        await api.reply(cast.head_admin)
    ).text == "✅ Admin of Both is now an employee of Acme HQ."

    await answer_to(running_bot, cast.head_admin, "/members")
    listing = api.last(cast.head_admin)
    await api.tap(cast.head_admin, listing, "Head Admin")
    card = await api.reply(cast.head_admin)
    assert "Remove from the staff" not in " ".join(card.button_texts())
    await api.tap(cast.head_admin, card, "Make employee")
    query = await api.tap(cast.head_admin, await api.reply(cast.head_admin), "Confirm")
    answer = await api.wait_answered(query)
    assert (answer.text, answer.show_alert) == (
        "A portal must keep at least one administrator.",
        True,
    )


async def test_a_long_log_fits_in_one_message(running_bot: RunningBot) -> None:
    ids = await seed(running_bot)
    cast = await people(running_bot)
    label = "x" * 60
    address = ".".join([label, label, label, "acme.ru"])
    async with running_bot.session_factory() as session:
        for number in range(40):
            session.add(
                AuditEntry(
                    at=running_bot.clock() + timedelta(minutes=number),
                    actor_person_id=None,
                    actor="Ю" * 200,
                    action="connect",
                    portal_id=1000 + number,
                    portal_address=address,
                    network_head_id=ids.head,
                    details="{}",
                    outcome="ok",
                )
            )
        await session.commit()

    log = await answer_to(running_bot, cast.head_admin, "/audit")

    # The stand-in refuses anything over Telegram's limit; the newest entries are the ones kept.
    assert 1 < log.text.count("· connected ·") < 40
    assert log.text.startswith("Latest in the log of the network of Acme HQ\n\n01.12.2026 12:39")


async def test_an_incompatibility_undone_before_sending_is_not_told(
    running_bot: RunningBot,
) -> None:
    await seed(running_bot)
    await people(running_bot)
    api = running_bot.api
    now = running_bot.clock()

    # Billing moves the branch down and, a minute later, up again, before the bot sends.
    async with running_bot.session_factory() as session:
        await network.set_plan(session, "spb.acme.ru", Plan.FREE, now)
        await network.set_plan(session, "spb.acme.ru", Plan.BASIC, now + timedelta(minutes=1))
        await session.commit()
    running_bot.clock.advance(minutes=1)

    mark = api.mark()
    assert await running_bot.deliver_notices() == 3
    texts = [message.text for message in await api.replies(since=mark, count=3)]
    assert all("is compatible with the network again" in text for text in texts)
    statuses = sorted((notice.kind, notice.status) for notice in await notices_of(running_bot))
    assert statuses.count(("branch_incompatible", "obsolete")) == 3
