"""The everyday flows for a stranger, an employee and an admin, in Russian and in English."""

import pytest

from domain.rules import Plan, Role
from tests import factories

TEXTS = {
    "en": {
        "greeting": "Hello!",
        "nothing": "You are not on any portal's staff yet.",
        "list": "Your portals",
        "staff": "👥 Staff",
        "structure": "🗂 Structure",
        "invite": "✉️ Invite employees",
        "people": "2 people on the staff",
        "tree": "In brackets: people in the department",
        "not admin": "Only the portal's administrators can do that.",
        "roles": "Invite as employee",
    },
    "ru": {
        "greeting": "Здравствуйте!",
        "nothing": "Вы пока не в штате ни одного портала.",
        "list": "Ваши порталы",
        "staff": "👥 Сотрудники",
        "structure": "🗂 Структура",
        "invite": "✉️ Пригласить сотрудников",
        "people": "2 человека в штате",
        "tree": "В скобках — сколько людей в отделе",
        "not admin": "Это могут только администраторы портала.",
        "roles": "Пригласить: сотрудник",
    },
}
NAME = "Филиал «Северо-Запад» <Ltd> & Co 🏢"
DEPARTMENT = "Отдел сопровождения корпоративных продаж"  # 40 Cyrillic letters


@pytest.fixture
async def portal(running_bot):
    async with running_bot.session_factory() as session:
        branch = await factories.portal(session, "nw.example.ru", NAME, Plan.BASIC)
        admin = await factories.person(session, "Админ", 501)
        employee = await factories.person(session, "Employee", 502)
        department = await factories.department(session, branch, DEPARTMENT, head=admin)
        await factories.member(session, admin, branch, Role.ADMIN, departments=[department])
        await factories.member(session, employee, branch)
        await session.commit()
    return running_bot


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_stranger(portal, language: str) -> None:
    api = portal.api
    texts = TEXTS[language]
    stranger = api.user(503, "Guest", language_code=language)

    await api.send(stranger, "/start")
    greeting, listing = await api.replies(stranger, count=2)
    assert greeting.text.startswith(texts["greeting"])
    assert listing.text.startswith(texts["nothing"])

    for command in ("/portals", "/staff", "/structure", "/invite"):
        await api.send(stranger, command)
        assert (await api.reply(stranger)).text.startswith(texts["nothing"])
    await api.send(stranger, "/help")
    help_text = (await api.reply(stranger)).text
    assert "/staff" not in help_text and "/start" in help_text


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("who", ["employee", "admin"])
async def test_member(portal, language: str, who: str) -> None:
    api = portal.api
    texts = TEXTS[language]
    person = api.user(502 if who == "employee" else 501, "Member", language_code=language)

    await api.send(person, "/portals")
    listing = await api.reply(person)
    assert listing.text.startswith(texts["list"])
    await api.tap(person, listing, "Северо-Запад")
    menu = await api.reply(person)
    assert menu.entity_texts("bold") == [NAME]
    assert (texts["invite"] in menu.button_texts()) is (who == "admin")

    await api.tap(person, menu, texts["staff"])
    staff = await api.reply(person)
    assert staff.text.startswith(f"{NAME} · {texts['people']}")
    assert DEPARTMENT in staff.text

    await api.send(person, "/structure")
    tree = await api.reply(person)
    assert texts["tree"] in tree.text
    assert f"└─ {DEPARTMENT} (1) — Админ" in tree.text

    await api.send(person, "/invite")
    answer = await api.reply(person)
    if who == "admin":
        assert texts["roles"] in answer.button_texts()
        await api.tap(person, answer, texts["roles"])
        departments = await api.reply(person)
        assert DEPARTMENT in departments.button_texts()
    else:
        assert answer.text == texts["not admin"]


async def test_many_portals_are_paged(running_bot) -> None:
    api = running_bot.api
    async with running_bot.session_factory() as session:
        busy = await factories.person(session, "Busy", 600)
        for number in range(19):
            portal = await factories.portal(
                session, f"p{number:02d}.example.ru", f"Portal {number:02d}"
            )
            await factories.member(session, busy, portal)
        await session.commit()
    person = api.user(600, "Busy", language_code="en")

    await api.send(person, "/portals")
    first = await api.reply(person)
    assert first.button_texts()[:8] == [f"▫️ Portal {number:02d}" for number in range(8)]
    assert first.button_texts()[8:] == ["1/3", "▶️"]

    await api.tap(person, first, "▶️")
    await api.tap(person, await api.reply(person), "▶️")
    last = await api.reply(person)
    assert last.button_texts() == [
        "▫️ Portal 16",
        "▫️ Portal 17",
        "▫️ Portal 18",
        "◀️",
        "3/3",
    ]
    await api.tap(person, last, "Portal 17")
    menu = await api.reply(person)
    await api.tap(person, menu, "All my portals")
    assert "▫️ Portal 17" in (await api.reply(person)).button_texts()
