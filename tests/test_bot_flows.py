"""Every everyday flow end to end: the real bot over HTTP against the Bot API stand-in."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from bot.dedupe import prune_updates
from services.searches import SEARCH_LIFETIME
from storage.models import Invite, Membership, Person, Portal, StaffQuery

EXAMPLE = json.loads((Path(__file__).parents[1] / "examples" / "network.json").read_text())

ANNA, BORIS, JOHN, DARIA, MAX, SOPHIE = 1001, 1002, 1004, 1005, 1007, 1009


@pytest.fixture
async def bot(running_bot):
    await running_bot.seed(EXAMPLE)
    return running_bot


async def portal_id(bot, address: str) -> int:
    async with bot.session_factory() as session:
        return (
            await session.execute(select(Portal.id).where(Portal.address == address))
        ).scalar_one()


async def open_menu(api, user, name: str):
    await api.send(user, "/portals")
    listing = await api.reply(user)
    await api.tap(user, listing, name)
    return await api.reply(user)


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "You are not on any portal's staff yet."), ("de", "Вы пока не в штате")],
)
async def test_a_stranger_is_told_how_to_get_in(bot, language: str, expected: str) -> None:
    api = bot.api
    stranger = api.user(5555, "Stranger", language_code=language)

    await api.send(stranger, "/start")
    _greeting, listing = await api.replies(stranger, count=2)

    assert expected in listing.text
    assert listing.reply_markup is None
    await api.send(stranger, "/staff")
    assert expected in (await api.reply(stranger)).text


async def test_portal_list_is_grouped_by_network_and_marks_the_current(bot) -> None:
    api = bot.api
    john = api.user(JOHN, "John", language_code="en")

    await api.send(john, "/portals")
    listing = await api.reply(john)

    assert listing.button_texts() == [
        "🏛 Acme HQ",
        "  ↳ 🏢 Acme Kazan",
        "  ↳ 🏢 Acme Екатеринбург",
    ]
    assert "No current portal yet" in listing.text


async def test_employee_menu_has_exactly_the_items_they_may_use(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")
    spb = await portal_id(bot, "spb.acme.ru")

    menu = await open_menu(api, boris, "Acme St Petersburg")

    assert menu.button_texts() == [
        "➡️ Go to this portal",
        "🌐 Open",
        "📋 Copy the address",
        "👥 Staff",
        "🗂 Structure",
        "⬅️ All my portals",
    ]
    assert menu.button("Open")["url"] == "https://spb.acme.ru/"
    assert menu.button("Copy")["copy_text"] == {"text": "spb.acme.ru"}
    assert "Branch of a network" in menu.text  # the head's name is not Boris's to see
    assert "Your role: employee" in menu.text

    await api.tap(boris, menu, "All my portals")
    assert "Your portals" in (await api.reply(boris)).text
    assert spb  # the menu was for the portal Boris is on


async def test_admin_menu_offers_invites_and_names_the_head(bot) -> None:
    api = bot.api
    anna = api.user(ANNA, "Anna", language_code="en")

    menu = await open_menu(api, anna, "Acme St Petersburg")

    assert "✉️ Пригласить сотрудников" in menu.button_texts()  # Anna chose Russian
    assert "Филиал сети Acme HQ" in menu.text


async def test_going_to_a_portal_makes_it_current_for_staff_and_structure(bot) -> None:
    api = bot.api
    john = api.user(JOHN, "John", language_code="en")

    await api.send(john, "/staff")
    question = await api.reply(john)
    assert "Which portal?" in question.text

    await api.tap(john, question, "Acme Kazan")
    staff = await api.reply(john)
    assert staff.text.startswith("Acme Kazan · 3 people on the staff")
    assert "Дарья Кузнецова" in staff.text

    await api.send(john, "/structure")
    tree = await api.reply(john)
    assert tree.text.startswith("Acme Kazan · 3 people")
    assert "└─ Офис (2) — Дарья Кузнецова" in tree.text
    assert "Not in any department (1)" in tree.text

    menu = await open_menu(api, john, "Acme HQ")
    query = await api.tap(john, menu, "Go to this portal")
    answer = await api.wait_answered(query)
    assert answer.text == "Acme HQ is now your current portal."
    await api.send(john, "/staff")
    assert (await api.reply(john)).text.startswith("Acme HQ ·")


async def test_staff_lists_and_searches_show_names_literally(bot) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    await open_menu(api, sophie, "Acme St Petersburg")
    await api.tap(sophie, api.last(sophie), "Go to this portal")
    await api.reply(sophie)

    await api.send(sophie, "/staff")
    staff = await api.reply(sophie)
    names = staff.entity_texts("bold")[1:]
    assert names == sorted(names, key=str.casefold)
    assert 'Max "<b>Bold</b>" O\'Brien & Sons 🚀' in names
    assert "Head of sales · Sales" in staff.text
    assert "B2B lead · B2B sales, Отдел сопровождения корпоративных продаж" in staff.text

    await api.send(sophie, "/staff <B>BOLD")
    found = await api.reply(sophie)
    assert "1 person found for “<B>BOLD”" in found.text
    assert found.entity_texts("bold")[1:] == ['Max "<b>Bold</b>" O\'Brien & Sons 🚀']

    await api.send(sophie, "/staff ИВАН")
    assert "Иван Морозов" in (await api.reply(sophie)).text
    await api.send(sophie, "/staff %_")
    assert "Nobody's name contains that text." in (await api.reply(sophie)).text


async def add_sales_staff(bot, address: str, count: int, name: str) -> int:
    async with bot.session_factory() as session:
        portal = await portal_id(bot, address)
        for number in range(count):
            full_name = f"{name} {number:02d}"
            person = Person(
                name=full_name, name_folded=full_name.casefold(), created_at=bot.clock()
            )
            session.add(person)
            await session.flush()
            session.add(Membership(person_id=person.id, portal_id=portal, role="employee"))
        await session.commit()
    return portal


async def stored_searches(bot) -> int:
    # The reply goes out before the update's transaction commits.
    await bot.settle()
    async with bot.session_factory() as session:
        return len((await session.scalars(select(StaffQuery.id))).all())


async def test_a_long_search_pages_through_server_side_state(bot) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    await add_sales_staff(
        bot, "spb.acme.ru", 45, "Сотрудник отдела продаж и обслуживания клиентов"
    )
    await api.send(sophie, "/staff")
    await api.tap(sophie, await api.reply(sophie), "Acme St Petersburg")
    await api.reply(sophie)

    # Far longer than callback data could carry: kept on the server, the pages still work.
    query = "сотрудник отдела продаж и обслуживания"
    await api.send(sophie, f"/staff {query}")
    first = await api.reply(sophie)
    assert first.text.startswith(f"Acme St Petersburg · 45 people found for “{query}”")
    assert await stored_searches(bot) == 1
    await api.tap(sophie, first, "▶️")
    second = await api.reply(sophie)
    assert "21. Сотрудник отдела продаж и обслуживания клиентов 20" in second.text
    await api.tap(sophie, second, "▶️")
    third = await api.reply(sophie)
    assert "45. Сотрудник отдела продаж и обслуживания клиентов 44" in third.text
    assert "▶️" not in third.button_texts()

    # Once forgotten, its pages say so rather than showing something else.
    async with bot.session_factory() as session:
        await session.execute(delete(StaffQuery))
        await session.commit()
    query_id = await api.tap(sophie, third, "◀️")
    assert (await api.wait_answered(query_id)).text == "This search is out of date: run it again."

    await api.send(sophie, "/staff " + "очень длинный запрос " * 150)
    nothing = await api.reply(sophie)
    assert "0 people found" in nothing.text and "Nobody's name contains" in nothing.text


async def test_a_short_search_travels_in_its_buttons(bot) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    spb = await add_sales_staff(bot, "spb.acme.ru", 45, "Продавец")
    await api.send(sophie, "/staff")
    await api.tap(sophie, await api.reply(sophie), "Acme St Petersburg")
    await api.reply(sophie)

    await api.send(sophie, "/staff продавец")
    first = await api.reply(sophie)
    assert first.text.startswith("Acme St Petersburg · 45 people found for “продавец”")
    await api.tap(sophie, first, "▶️")
    second = await api.reply(sophie)
    assert "21. Продавец 20" in second.text and "page 2 of 3" in second.text
    assert f"sf:{spb}:2:продавец" in [
        b.get("callback_data") for row in second.buttons() for b in row
    ]
    # Nothing was stored, so nothing can go out of date.
    assert await stored_searches(bot) == 0

    # The text in a button is untrusted like any search: wildcards match only themselves,
    # and another portal's staff stays out of reach.
    await api.press(sophie, second, f"sf:{spb}:0:%", check=False)
    assert "0 people found for “%”" in (await api.reply(sophie)).text
    async with bot.session_factory() as session:
        elsewhere = Portal(
            address="other.example.ru", name="Other", plan="basic", created_at=bot.clock()
        )
        session.add(elsewhere)
        await session.commit()
        other = elsewhere.id
    query_id = await api.press(sophie, second, f"sf:{other}:0:продавец", check=False)
    assert (await api.wait_answered(query_id)).text == "No portal of yours has that address."


@pytest.mark.parametrize(
    "data",
    [
        "sf:{spb}:9999999999999999999:продавец",
        "sp:{spb}:99999999999999999999:0",
        "pl:4611686018427387904",
        "tp:99999999999999999999:0",
        "p:m:99999999999",
        "sp:{spb}:-3:0",
    ],
)
async def test_numbers_no_database_holds_are_an_out_of_date_button(bot, data: str) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    spb = await portal_id(bot, "spb.acme.ru")
    await api.send(sophie, "/portals")
    listing = await api.reply(sophie)

    query_id = await api.press(sophie, listing, data.format(spb=spb), check=False)
    assert (await api.wait_answered(query_id)).text == "This button is out of date."
    # The bot goes on as before.
    await api.send(sophie, "/portals")
    assert any("Acme St Petersburg" in text for text in (await api.reply(sophie)).button_texts())


async def test_yo_is_searched_as_ye(bot) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    await add_sales_staff(bot, "spb.acme.ru", 1, "Пётр Семёнов")
    await add_sales_staff(bot, "spb.acme.ru", 1, "Семен Ежов")
    await api.send(sophie, "/staff")
    await api.tap(sophie, await api.reply(sophie), "Acme St Petersburg")
    await api.reply(sophie)

    for query, found in [
        ("семенов", ["Пётр Семёнов 00"]),
        ("СЕМЁН", ["Пётр Семёнов 00", "Семен Ежов 00"]),
        ("ёжов", ["Семен Ежов 00"]),
        ("петр", ["Пётр Семёнов 00"]),
    ]:
        await api.send(sophie, f"/staff {query}")
        assert (await api.reply(sophie)).entity_texts("bold")[1:] == found, query


async def test_old_searches_are_forgotten_by_the_hourly_job(bot) -> None:
    api = bot.api
    sophie = api.user(SOPHIE, "Sophie", language_code="en")
    await add_sales_staff(bot, "spb.acme.ru", 25, "Специалист по работе с ключевыми клиентами")
    await api.send(sophie, "/staff")
    await api.tap(sophie, await api.reply(sophie), "Acme St Petersburg")
    await api.reply(sophie)
    await api.send(sophie, "/staff специалист по работе с ключевыми")
    await api.reply(sophie)
    assert await stored_searches(bot) == 1

    await prune_updates(bot.session_factory, bot.clock() + SEARCH_LIFETIME - timedelta(hours=1))
    assert await stored_searches(bot) == 1
    await prune_updates(bot.session_factory, bot.clock() + SEARCH_LIFETIME + timedelta(hours=1))
    assert await stored_searches(bot) == 0


async def test_invite_round_trip(bot) -> None:
    api = bot.api
    anna = api.user(ANNA, "Anna", language_code="en")
    newcomer = api.user(4242, "Olga", last_name="<Newcomer>", language_code="en")

    menu = await open_menu(api, anna, "Acme St Petersburg")
    await api.tap(anna, menu, "Пригласить")
    roles = await api.reply(anna)
    await api.tap(anna, roles, "сотрудник")
    departments = await api.reply(anna)
    await api.tap(anna, departments, "Розница")
    made = await api.reply(anna)
    link = made.button("Скопировать")["copy_text"]["text"]
    assert link in made.text and "Розница" in made.text

    await api.open_link(newcomer, link)
    welcome, listing = await api.replies(newcomer, count=2)
    assert welcome.text == "Welcome to Acme St Petersburg!"
    assert listing.button_texts() == ["🏢 Acme St Petersburg ✓"]

    assert await bot.deliver_notices() == 1
    told = api.last(anna)
    assert (
        told.text == "Olga <Newcomer> присоединяется к Acme St Petersburg по вашему приглашению."
    )

    await api.send(newcomer, "/staff Olga")
    found = await api.reply(newcomer)
    assert "Olga <Newcomer>" in found.text and "Розница" in found.text

    latecomer = api.user(4343, "Late", language_code="en")
    await api.open_link(latecomer, link)
    refusal, _ = await api.replies(latecomer, count=2)
    assert "already been used" in refusal.text
    async with bot.session_factory() as session:
        assert await session.scalar(select(Person.id).where(Person.telegram_id == 4343)) is None


async def test_expired_revoked_unknown_and_already_member_invites(bot) -> None:
    api = bot.api
    anna = api.user(ANNA, "Anna", language_code="en")
    boris = api.user(BORIS, "Boris", language_code="en")
    guest = api.user(4444, "Guest", language_code="en")

    links = []
    for _ in range(3):
        await api.send(anna, "/invite")
        question = await api.reply(anna)
        if "Which portal" in question.text or "Какой портал" in question.text:
            await api.tap(anna, question, "Acme St Petersburg")
            question = await api.reply(anna)
        await api.tap(anna, question, "сотрудник")
        departments = await api.reply(anna)
        await api.tap(anna, departments, "Без отдела")
        links.append((await api.reply(anna)).button("Скопировать")["copy_text"]["text"])

    # Boris is already on the staff: his opening changes nothing and keeps the link usable.
    await api.open_link(boris, links[0])
    already, _ = await api.replies(boris, count=2)
    assert "already on the staff" in already.text

    await api.tap(anna, api.last(anna), "Открытые приглашения")
    listing = await api.reply(anna)
    assert len([t for t in listing.button_texts() if t.startswith("✖")]) == 3
    revoke = next(b for row in listing.buttons() for b in row if b["text"].startswith("✖"))
    query = await api.press(anna, listing, revoke["callback_data"])
    assert (await api.wait_answered(query)).text == "Приглашение отозвано."
    await api.open_link(guest, links[2])
    assert "was revoked" in (await api.replies(guest, count=2))[0].text

    bot.clock.advance(days=7, seconds=1)
    await api.open_link(guest, links[1])
    assert "has expired" in (await api.replies(guest, count=2))[0].text

    await api.send(guest, "/start not-a-real-token")
    assert "is not valid" in (await api.replies(guest, count=2))[0].text
    async with bot.session_factory() as session:
        assert await session.scalar(select(Person.id).where(Person.telegram_id == 4444)) is None
        open_count = await session.scalar(
            select(Invite.id).where(Invite.used_at.is_not(None)).limit(1)
        )
        assert open_count is None


async def test_employees_cannot_invite_and_forged_taps_reveal_nothing(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")
    spb = await portal_id(bot, "spb.acme.ru")
    nsk = await portal_id(bot, "nsk.acme.ru")

    await api.send(boris, "/invite")
    assert (await api.reply(boris)).text == "Only the portal's administrators can do that."

    menu = await open_menu(api, boris, "Acme St Petersburg")
    for data in (
        f"iv:r:{spb}:admin:0",
        f"p:m:{nsk}",
        "p:m:999999",
        f"sp:{nsk}:0:0",
        f"tp:{nsk}:0",
        "p:s:abc",
        "garbage",
    ):
        query = await api.press(boris, menu, data, check=False)
        answer = await api.wait_answered(query)
        assert answer.show_alert
        assert answer.text in (
            "No portal of yours has that address.",
            "Only the portal's administrators can do that.",
            "This button is out of date.",
        )
    await api.assert_silent(boris)


async def test_a_removed_person_loses_access_on_the_next_tap(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")
    menu = await open_menu(api, boris, "Acme St Petersburg")

    async with bot.session_factory() as session:
        await session.execute(
            delete(Membership).where(
                Membership.person_id
                == select(Person.id).where(Person.telegram_id == BORIS).scalar_subquery()
            )
        )
        await session.commit()

    query = await api.tap(boris, menu, "Staff")
    assert (await api.wait_answered(query)).text == "No portal of yours has that address."
    await api.send(boris, "/portals")
    assert "You are not on any portal's staff yet." in (await api.reply(boris)).text


async def test_group_chats_get_a_pointer_and_never_staff(bot) -> None:
    api = bot.api
    group = api.group(-100500, "Acme chat")
    boris = api.user(BORIS, "Boris", language_code="en")

    for command in ("/staff", "/structure", "/invite", "/portals", "/start"):
        await api.send(boris, command, chat=group)
        pointer = await api.reply(group)
        assert "only in a private chat" in pointer.text
        assert pointer.button("private chat")["url"] == f"https://t.me/{api.bot_username}"

    await api.send(boris, "/help", chat=group)
    assert "/staff" in (await api.reply(group)).text
    await api.send(boris, "hello everyone", chat=group)
    await api.assert_silent(group)


async def test_language_choice_sticks_and_help_fits_the_person(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")

    await api.send(boris, "/help")
    help_text = (await api.reply(boris)).text
    assert "/staff" in help_text and "/invite" not in help_text and "/connect" not in help_text

    await api.send(boris, "/language")
    await api.tap(boris, await api.reply(boris), "Русский")
    assert (await api.reply(boris)).text == "Теперь я отвечаю вам по-русски."
    await api.send(boris, "/cancel")
    assert (await api.reply(boris)).text == "Отменять нечего."

    anna = api.user(ANNA, "Anna", language_code="en")
    await api.send(anna, "/help")
    assert "/invite" in (await api.reply(anna)).text


async def test_unknown_input_gets_a_short_answer(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")

    await api.send(boris, "/nonsense")
    assert "I don't know that command" in (await api.reply(boris)).text
    await api.send(boris, "just words")
    assert "I answer commands" in (await api.reply(boris)).text


async def test_double_taps_stale_queries_and_old_messages(bot) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")
    menu = await open_menu(api, boris, "Acme St Petersburg")
    staff_data = menu.button("Staff")["callback_data"]

    first = await api.tap(boris, menu, "Staff")
    await api.wait_answered(first)
    staff = api.last(boris)
    again = await api.press(boris, staff, staff_data, check=False)
    await api.wait_answered(again)
    assert api.not_modified  # tapped twice: Telegram said "not modified", nothing broke

    stale = await api.tap(boris, api.last(boris), "Back to the portal")
    api.make_stale(stale)
    await bot.settle()
    await api.press_inaccessible(boris, staff, f"p:m:{await portal_id(bot, 'spb.acme.ru')}")
    fresh = await api.reply(boris)
    assert fresh.text.startswith("Acme St Petersburg")
    assert not [m for m in api.messages(boris) if "Sorry" in m.text]


async def test_a_failing_handler_apologises_and_the_bot_keeps_going(bot, monkeypatch) -> None:
    api = bot.api
    boris = api.user(BORIS, "Boris", language_code="en")

    async def broken(*_args, **_kwargs):
        raise RuntimeError("the database fell over")

    monkeypatch.setattr("bot.commands.structure.structure", broken)
    await api.send(boris, "/structure")
    assert (await api.reply(boris)).text == (
        "Sorry, something went wrong. Please try again a little later."
    )
    monkeypatch.undo()
    await api.send(boris, "/structure")
    assert "Sales" in (await api.reply(boris)).text
