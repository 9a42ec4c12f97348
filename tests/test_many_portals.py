"""A person on many portals, end to end: the list paged in SQL, taps into later pages, choosing
a portal for one-portal commands, forged taps, and statements per update that do not grow with
the number of portals.

Ника is on 25 portals: the head of the Зенит network (admin) and 14 of its branches, the head of
the Atlas network (employee) and 3 of its branches, a branch whose head she is not on, and 5
standalone portals. The portals are made in an order that follows neither the alphabet nor the
list, heads last, so ids, names and places in the list all disagree; the names mix Latin and
Cyrillic letters and letter cases, so an order that does not fold letter case shows.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import String, delete, literal, select, update

from bot.keyboards.builders import PORTALS_PER_PAGE
from domain.rules import Plan, Role
from services.people import (
    ALL_PORTALS_UP_TO,
    folded_name,
    list_order_key,
    my_portals,
    portals_page,
)
from storage.models import Membership, Person
from tests import factories
from tests.botapi.models import FakeUser, SentMessage
from tests.factories import EPOCH
from tests.harness import RunningBot
from tests.statements import counting

ADMIN, EMPLOYEE = Role.ADMIN, Role.EMPLOYEE
ZENIT, ATLAS, FOREIGN = "Зенит Холдинг", "Atlas Group", "Чужой Холдинг"
NIKA, FIVE, TEN, ELEVEN = 3001, 3005, 3010, 3011
NOT_VISIBLE = "No portal of yours has that address."


@dataclass(frozen=True)
class Spec:
    """A portal to make: its network's head (None: standalone), and the role there of the
    first person `build` is given (None: not on its staff)."""

    name: str
    network: str | None
    role: Role | None
    is_head: bool = False
    incompatible: bool = False


# In the order they are made: their ids follow this order.
NIKAS_PORTALS = [
    Spec("Яблоко", ZENIT, EMPLOYEE),
    Spec("Ромашка", None, ADMIN),
    Spec("апрель", ZENIT, ADMIN),
    Spec("Бета", ATLAS, ADMIN),
    Spec("Ёлка", ZENIT, EMPLOYEE),
    Spec("Delta", None, EMPLOYEE),
    Spec("Берёза", ZENIT, ADMIN),
    Spec("berlin office", ZENIT, EMPLOYEE),
    Spec("aurora", ATLAS, EMPLOYEE),
    Spec("Amsterdam", ZENIT, ADMIN),
    Spec("один", None, ADMIN),
    Spec("ALPHA 2", ZENIT, EMPLOYEE),
    Spec("Филиал без головы", FOREIGN, EMPLOYEE),
    Spec("alpha", ZENIT, ADMIN),
    Spec("Москва", ZENIT, EMPLOYEE),
    Spec("Гамма", ATLAS, EMPLOYEE),
    Spec("ромашка", None, EMPLOYEE),
    Spec("москва-2", ZENIT, ADMIN),
    Spec("Омск", ZENIT, EMPLOYEE, incompatible=True),
    Spec("Äpfel", None, EMPLOYEE),
    Spec("Новосибирск", ZENIT, ADMIN),
    Spec("Zürich", ZENIT, EMPLOYEE),
    Spec("Казань", ZENIT, ADMIN),
    Spec("Тайный филиал", ZENIT, None),
    Spec("Соседи", None, None),
    Spec(ZENIT, ZENIT, ADMIN, is_head=True),
    Spec(ATLAS, ATLAS, EMPLOYEE, is_head=True),
    Spec(FOREIGN, FOREIGN, None, is_head=True),
]

# Her list as DOMAIN.md puts it: networks together (by head), each head first, then its
# branches by name whatever the letter case; standalone portals last, by name.
NIKAS_LIST = [
    ZENIT,
    "alpha",
    "ALPHA 2",
    "Amsterdam",
    "berlin office",
    "Zürich",
    "апрель",
    "Берёза",
    "Казань",
    "Москва",
    "москва-2",
    "Новосибирск",
    "Омск",
    "Яблоко",
    "Ёлка",
    ATLAS,
    "aurora",
    "Бета",
    "Гамма",
    "Филиал без головы",
    "Delta",
    "Äpfel",
    "один",
    "Ромашка",
    "ромашка",
]

# Around the boundary: ten portals, and the same ten and one more, the head made last.
NORTH = "Север Холдинг"
BOUNDARY_PORTALS = [
    Spec("ёж", NORTH, EMPLOYEE),
    Spec("Ель", NORTH, ADMIN),
    Spec("Липа", None, EMPLOYEE),
    Spec("ива", NORTH, EMPLOYEE),
    Spec("Клён", NORTH, ADMIN),
    Spec("осина", None, ADMIN),
    Spec("Дуб", NORTH, EMPLOYEE),
    Spec("Ясень", None, EMPLOYEE),
    Spec("Вяз", NORTH, EMPLOYEE),
    Spec("Бук", NORTH, EMPLOYEE),
    Spec(NORTH, NORTH, ADMIN, is_head=True),
]
ELEVENTH = "Бук"
BOUNDARY_LIST = [NORTH, "Бук", "Вяз", "Дуб", "Ель", "ива", "Клён", "ёж", "Липа", "осина", "Ясень"]


@dataclass
class Layout:
    """What the tests made: portal ids by name, and who is on which portal."""

    specs: dict[str, Spec]
    ids: dict[str, int] = field(default_factory=dict)
    person_ids: dict[int, int] = field(default_factory=dict)

    def name_of(self, portal_id: int) -> str:
        return next(name for name, known in self.ids.items() if known == portal_id)

    def label(self, name: str, listed: list[str], *, current: str | None = None) -> str:
        """The portal's button in the list of someone on the portals `listed`."""
        spec = self.specs[name]
        under_head = not spec.is_head and spec.network in listed
        tick = " ✓" if name == current else ""
        return f"{'  ↳ ' if under_head else ''}{mark(spec)} {name}{tick}"


def mark(spec: Spec) -> str:
    if spec.is_head:
        return "🏛"
    if spec.network is not None:
        return "⚠️" if spec.incompatible else "🏢"
    return "▫️"


async def build(bot: RunningBot, specs: list[Spec], people: dict[int, list[str]]) -> Layout:
    """The portals, in the order given, and people linked to Telegram on the portals named.

    The first person named takes the roles the specs give; the others are employees, but
    admins of the heads, so that every branch offers them its disconnection.
    """
    layout = Layout(specs={spec.name: spec for spec in specs})
    async with bot.session_factory() as session:
        portals = {}
        for number, spec in enumerate(specs, start=1):
            plan = Plan.FREE if spec.incompatible else Plan.STANDARD
            portals[spec.name] = await factories.portal(
                session,
                f"p{number:02d}-{len(specs)}.example.ru",
                spec.name,
                Plan.ENTERPRISE if spec.is_head else plan,
                is_head=spec.is_head,
                ever_in_network=spec.network is not None,
                incompatible_until=EPOCH + timedelta(days=10) if spec.incompatible else None,
            )
        # Heads are made last, so their branches join them afterwards.
        for spec in specs:
            if spec.network is not None and not spec.is_head:
                portals[spec.name].head_id = portals[spec.network].id
                portals[spec.name].connected_at = EPOCH
        outsider = await factories.person(session, "Стас Посторонний")
        for spec in specs:
            await factories.member(session, outsider, portals[spec.name], ADMIN)

        first = True
        for telegram_id, names in people.items():
            who = await factories.person(session, f"Человек {telegram_id}", telegram_id)
            layout.person_ids[telegram_id] = who.id
            for name in names:
                spec = layout.specs[name]
                role = spec.role if first else (ADMIN if spec.is_head else EMPLOYEE)
                assert role is not None
                await factories.member(session, who, portals[name], role)
            first = False
        layout.ids = {name: portal.id for name, portal in portals.items()}
        await session.commit()
    return layout


@pytest.fixture
async def nika(running_bot: RunningBot) -> Layout:
    """Ника on her 25 portals, and a colleague on 5 of them."""
    mine = [spec.name for spec in NIKAS_PORTALS if spec.role is not None]
    assert sorted(mine) == sorted(NIKAS_LIST)
    return await build(
        running_bot,
        NIKAS_PORTALS,
        {NIKA: mine, FIVE: [ZENIT, "Казань", "Омск", "Бета", "ромашка"]},
    )


@dataclass(frozen=True)
class Page:
    """A page of the portal list as the person sees it."""

    text: str
    # The portals' buttons: (portal id, label), top to bottom.
    portals: list[tuple[int, str]]
    pager: list[str]


def page_of(message: SentMessage) -> Page:
    portals: list[tuple[int, str]] = []
    pager: list[str] = []
    for row in message.buttons():
        for button in row:
            data = str(button.get("callback_data", ""))
            if data.startswith("p:m:"):
                portals.append((int(data.removeprefix("p:m:")), button["text"]))
            elif data.startswith(("pl:", "no")):
                pager.append(button["text"])
    return Page(message.text, portals, pager)


def pager_of(page: int, pages: int) -> list[str]:
    if pages == 1:
        return []
    return [
        *(["◀️"] if page > 0 else []),
        f"{page + 1}/{pages}",
        *(["▶️"] if page < pages - 1 else []),
    ]


async def walk_the_list(bot: RunningBot, user: FakeUser) -> list[Page]:
    """/portals, then ▶️ to the last page, then ◀️ back to the first: every page is the same
    both ways."""
    api = bot.api
    await api.send(user, "/portals")
    message = await api.reply(user)
    pages = [page_of(message)]
    while "▶️" in message.button_texts():
        await api.tap(user, message, "▶️")
        message = await api.reply(user)
        pages.append(page_of(message))
    back = [pages[-1]]
    while "◀️" in message.button_texts():
        await api.tap(user, message, "◀️")
        message = await api.reply(user)
        back.append(page_of(message))
    assert back[::-1] == pages
    return pages


async def python_and_sql_orders(bot: RunningBot, person_id: int) -> tuple[list[int], list[int]]:
    """`list_order_key` over all the person's portals, and the pages SQL gives, end to end."""
    async with bot.session_factory() as session:
        everything = await my_portals(session, person_id)
        python = [portal.id for portal in sorted(everything, key=list_order_key)]
        sql: list[int] = []
        page = 0
        while True:
            listing = await portals_page(session, person_id, page, PORTALS_PER_PAGE)
            assert listing.page == page and listing.total == len(python)
            sql += [portal.id for portal in listing.portals]
            if page == listing.pages - 1:
                break
            page += 1
        # A page past the end is the last one.
        past = await portals_page(session, person_id, page + 5, PORTALS_PER_PAGE)
        assert past.page == page
        assert [portal.id for portal in past.portals] == sql[page * PORTALS_PER_PAGE :]
    return python, sql


async def folded_unlike_python(bot: RunningBot, names: list[str]) -> list[str]:
    """The names that `folded_name`, which orders the list in SQL, folds unlike Python here."""
    async with bot.session_factory() as session:
        dialect = session.get_bind().dialect.name
        folded = select(*(folded_name(literal(name, String()), dialect) for name in names))
        row = (await session.execute(folded)).one()
    return [name for name, got in zip(names, row, strict=True) if got != name.casefold()]


async def check_the_list(
    bot: RunningBot,
    layout: Layout,
    user: FakeUser,
    expected: list[str],
    current: str | None = None,
) -> list[Page]:
    """The person's list, page by page, is `expected`: each portal once, in that order."""
    shown = await walk_the_list(bot, user)
    count = -(-len(expected) // PORTALS_PER_PAGE)
    assert len(shown) == count
    for number, page in enumerate(shown):
        left = len(expected) - number * PORTALS_PER_PAGE
        assert len(page.portals) == min(PORTALS_PER_PAGE, left)
        assert page.pager == pager_of(number, count)
        assert f"Your portals ({len(expected)})" in page.text
        assert ("No current portal yet" in page.text) is (current is None)
    listed = [portal_id for page in shown for portal_id, _ in page.portals]
    assert sorted(listed) == sorted(layout.ids[name] for name in expected)

    unfolded = await folded_unlike_python(bot, expected)
    if unfolded:
        # Known gap: under a C ctype PostgreSQL's lower() folds ASCII letters only.
        pytest.xfail(f"folded_name folds {unfolded} unlike str.casefold on this database")
    for number, page in enumerate(shown):
        part = expected[number * PORTALS_PER_PAGE : (number + 1) * PORTALS_PER_PAGE]
        assert page.portals == [
            (layout.ids[name], layout.label(name, expected, current=current)) for name in part
        ]
    python, sql = await python_and_sql_orders(bot, layout.person_ids[user.id])
    assert sql == python == listed == [layout.ids[name] for name in expected]
    return shown


def menu_of(role: Role, *, disconnect: bool) -> list[str]:
    """The branch menu's buttons for a member in that role, as DOMAIN.md orders them."""
    return [
        "➡️ Go to this portal",
        "🌐 Open",
        "📋 Copy the address",
        *(["✉️ Invite employees"] if role is ADMIN else []),
        "👥 Staff",
        "🗂 Structure",
        *(["⛔ Disconnect from the network"] if disconnect else []),
        "⬅️ All my portals",
    ]


def back_data(message: SentMessage) -> str:
    return str(message.button("All my portals")["callback_data"])


async def check_every_menu(
    bot: RunningBot,
    layout: Layout,
    user: FakeUser,
    pages: list[Page],
    roles: dict[str, Role],
    head_admin_of: set[str],
) -> None:
    """Each portal's menu, tapped on its page, has its role's items; the way back leads to
    the same page. Starts on the first page of the list."""
    api = bot.api
    # The walk through the list ends on its first page.
    for number, page in enumerate(pages):
        if number:
            await api.tap(user, api.last(user), "▶️")
            assert page_of(await api.reply(user)) == page
        for portal_id, _label in page.portals:
            name = layout.name_of(portal_id)
            spec = layout.specs[name]
            await api.press(user, api.last(user), f"p:m:{portal_id}")
            menu = await api.reply(user)
            branch = spec.network is not None and not spec.is_head
            disconnect = branch and spec.network in head_admin_of
            assert menu.button_texts() == menu_of(roles[name], disconnect=disconnect), name
            assert menu.text.startswith(f"{name}\n")
            assert f"Your role: {roles[name].value}" in menu.text
            if spec.is_head:
                assert "Head of the network" in menu.text
            elif spec.network is None:
                assert "Standalone portal" in menu.text
            elif spec.network in roles:
                assert f"Branch of the network of {spec.network}" in menu.text
            else:
                # The head's name is not hers to see.
                assert "Branch of a network" in menu.text and spec.network not in menu.text
            assert ("Not compatible with the network" in menu.text) is spec.incompatible
            assert back_data(menu) == f"pl:{number}", name
            await api.tap(user, menu, "All my portals")
            assert page_of(await api.reply(user)) == page, name


def nikas_roles() -> dict[str, Role]:
    return {spec.name: spec.role for spec in NIKAS_PORTALS if spec.role is not None}


async def test_the_list_pages_in_network_order_with_every_portal_once(
    running_bot: RunningBot, nika: Layout
) -> None:
    user = running_bot.api.user(NIKA, "Ника", language_code="en")
    # The order is neither the names' (with or without letter case) nor the ids'.
    assert NIKAS_LIST != sorted(NIKAS_LIST) != sorted(NIKAS_LIST, key=str.casefold)
    assert [nika.ids[name] for name in NIKAS_LIST] != sorted(nika.ids[n] for n in NIKAS_LIST)

    pages = await check_the_list(running_bot, nika, user, NIKAS_LIST)

    assert [len(page.portals) for page in pages] == [8, 8, 8, 1]
    assert pages[0].pager == ["1/4", "▶️"] and pages[3].pager == ["◀️", "4/4"]
    # The colleague's list from the same portals: one page, the same order, no pager.
    five = running_bot.api.user(FIVE, "Пятый", language_code="en")
    [page] = await check_the_list(
        running_bot, nika, five, [ZENIT, "Казань", "Омск", "Бета", "ромашка"]
    )
    assert page.pager == []


async def test_a_page_past_the_end_shows_the_last(running_bot: RunningBot, nika: Layout) -> None:
    api = running_bot.api
    user = api.user(NIKA, "Ника", language_code="en")
    [*_, last] = await walk_the_list(running_bot, user)

    await api.press(user, api.last(user), "pl:99", check=False)

    assert page_of(await api.reply(user)) == last


async def test_a_tap_on_a_later_page_opens_the_menu_and_leads_back_there(
    running_bot: RunningBot, nika: Layout
) -> None:
    user = running_bot.api.user(NIKA, "Ника", language_code="en")
    pages = await walk_the_list(running_bot, user)

    await check_every_menu(running_bot, nika, user, pages, nikas_roles(), head_admin_of={ZENIT})


async def test_going_to_a_portal_on_page_three_makes_it_current_for_staff(
    running_bot: RunningBot, nika: Layout
) -> None:
    api = running_bot.api
    user = api.user(NIKA, "Ника", language_code="en")
    await add_staff(running_bot, nika, "Бета", ["Вера Бетова", "Глеб Бетов"])
    await add_staff(running_bot, nika, "ромашка", ["Роман Ромашкин"])

    # With no current portal /staff asks, offering every portal, those past the tenth too.
    await api.send(user, "/staff")
    question = await api.reply(user)
    assert "Which portal?" in question.text
    assert [
        (button["text"], button["callback_data"]) for row in question.buttons() for button in row
    ] == [(f"{mark(nika.specs[name])} {name}", f"p:s:{nika.ids[name]}") for name in NIKAS_LIST]
    assert NIKAS_LIST.index("ромашка") >= ALL_PORTALS_UP_TO
    await api.tap(user, question, "▫️ ромашка")
    staff = await api.reply(user)
    # Her, her colleague on five portals, the outsider on every portal, and Роман.
    assert staff.text.startswith("ромашка · 4 people on the staff")
    await check_the_list(running_bot, nika, user, NIKAS_LIST, current="ромашка")

    # Going to Бета, on page 3, makes it current instead.
    await api.send(user, "/portals")
    listing = await api.reply(user)
    for _ in range(2):
        await api.tap(user, listing, "▶️")
        listing = await api.reply(user)
    assert listing.button("Бета")["text"] == "  ↳ 🏢 Бета"
    await api.tap(user, listing, "Бета")
    menu = await api.reply(user)
    assert "This is your current portal." not in menu.text
    query = await api.tap(user, menu, "Go to this portal")
    assert (await api.wait_answered(query)).text == "Бета is now your current portal."
    assert "This is your current portal." in (await api.reply(user)).text
    await api.tap(user, menu, "All my portals")
    back = page_of(await api.reply(user))
    assert back.portals[1] == (nika.ids["Бета"], "  ↳ 🏢 Бета ✓")
    assert (await check_the_list(running_bot, nika, user, NIKAS_LIST, current="Бета"))[2] == back

    await api.send(user, "/staff")
    staff = await api.reply(user)
    assert staff.text.startswith("Бета · 5 people on the staff")
    assert "Вера Бетова" in staff.text and "Which portal?" not in staff.text


async def add_staff(bot: RunningBot, layout: Layout, portal: str, names: list[str]) -> None:
    async with bot.session_factory() as session:
        for name in names:
            who = await factories.person(session, name)
            session.add(
                Membership(person_id=who.id, portal_id=layout.ids[portal], role="employee")
            )
        await session.commit()


async def test_forged_taps_on_portals_not_hers_are_refused_like_nonexistent_ones(
    running_bot: RunningBot, nika: Layout
) -> None:
    api = running_bot.api
    user = api.user(NIKA, "Ника", language_code="en")
    await api.send(user, "/portals")
    listing = await api.reply(user)
    before = page_of(listing)

    answers = []
    # A branch of the network she administers, a stranger's head, a stranger's portal, none.
    for portal_id in (nika.ids["Тайный филиал"], nika.ids[FOREIGN], nika.ids["Соседи"], 999999):
        for action in "mgsti":
            query = await api.press(user, listing, f"p:{action}:{portal_id}", check=False)
            answer = await api.wait_answered(query)
            answers.append((answer.text, answer.show_alert))
    assert set(answers) == {(NOT_VISIBLE, True)}
    await api.assert_silent(user)
    assert page_of(api.last(user)) == before
    async with running_bot.session_factory() as session:
        person = await session.get(Person, nika.person_ids[NIKA])
        assert person is not None and person.current_portal_id is None


async def test_a_portal_removed_between_two_taps_is_refused_on_the_next(
    running_bot: RunningBot, nika: Layout
) -> None:
    api = running_bot.api
    user = api.user(NIKA, "Ника", language_code="en")
    omsk = nika.ids["Омск"]
    await api.send(user, "/portals")
    listing = await api.reply(user)
    await api.tap(user, listing, "▶️")
    await api.tap(user, await api.reply(user), "Омск")
    menu = await api.reply(user)
    await api.tap(user, menu, "Go to this portal")
    menu = await api.reply(user)
    assert "This is your current portal." in menu.text

    # Removed from Омск behind the bot's back: even the current portal is left as it was.
    async with running_bot.session_factory() as session:
        await session.execute(
            delete(Membership).where(
                Membership.person_id == nika.person_ids[NIKA], Membership.portal_id == omsk
            )
        )
        await session.commit()

    for data in (f"p:s:{omsk}", f"p:g:{omsk}", f"p:m:{omsk}", f"p:t:{omsk}"):
        query = await api.press(user, menu, data, check=False)
        answer = await api.wait_answered(query)
        assert (answer.text, answer.show_alert) == (NOT_VISIBLE, True), data
    await api.assert_silent(user)

    # The list has one portal fewer; the one current before is current no more.
    await api.tap(user, menu, "All my portals")
    second = page_of(await api.reply(user))
    assert len(second.portals) == 8 and omsk not in dict(second.portals)
    assert "Your portals (24)" in second.text and second.pager == ["◀️", "2/3", "▶️"]
    await api.send(user, "/staff")
    question = await api.reply(user)
    assert "Which portal?" in question.text
    assert len(question.buttons()) == 24 and "Омск" not in str(question.button_texts())
    without = [name for name in NIKAS_LIST if name != "Омск"]
    assert (await check_the_list(running_bot, nika, user, without))[1].portals == second.portals


async def test_a_role_changed_between_two_taps_changes_the_next_menu(
    running_bot: RunningBot, nika: Layout
) -> None:
    api = running_bot.api
    user = api.user(NIKA, "Ника", language_code="en")
    kazan = nika.ids["Казань"]
    await api.send(user, "/portals")
    await api.tap(user, await api.reply(user), "▶️")
    await api.tap(user, await api.reply(user), "Казань")
    menu = await api.reply(user)
    assert menu.button_texts() == menu_of(ADMIN, disconnect=True)

    async with running_bot.session_factory() as session:
        await session.execute(
            update(Membership)
            .where(Membership.person_id == nika.person_ids[NIKA], Membership.portal_id == kazan)
            .values(role=EMPLOYEE.value)
        )
        await session.commit()

    query = await api.tap(user, menu, "Invite employees")
    answer = await api.wait_answered(query)
    assert answer.text == "Only the portal's administrators can do that."
    await api.press(user, menu, f"p:m:{kazan}", check=False)
    again = await api.reply(user)
    assert again.button_texts() == menu_of(EMPLOYEE, disconnect=True)
    assert "Your role: employee" in again.text and back_data(again) == "pl:1"


async def test_ten_and_eleven_portals_look_the_same(running_bot: RunningBot) -> None:
    ten = [name for name in BOUNDARY_LIST if name != ELEVENTH]
    layout = await build(running_bot, BOUNDARY_PORTALS, {ELEVEN: BOUNDARY_LIST, TEN: ten})
    assert len(ten) == ALL_PORTALS_UP_TO
    roles = {spec.name: spec.role for spec in BOUNDARY_PORTALS if spec.role is not None}
    api = running_bot.api

    shapes = []
    for telegram_id, expected in ((TEN, ten), (ELEVEN, BOUNDARY_LIST)):
        user = api.user(telegram_id, "Человек", language_code="en")
        person_roles = (
            roles
            if telegram_id == ELEVEN
            else {name: ADMIN if layout.specs[name].is_head else EMPLOYEE for name in ten}
        )
        pages = await check_the_list(running_bot, layout, user, expected)
        await check_every_menu(running_bot, layout, user, pages, person_roles, {NORTH})
        shapes.append([(len(page.portals), page.pager) for page in pages])

        # Going to the last portal of page 2 marks it there, and /staff then needs no question.
        last = expected[-1]
        await api.press(user, api.last(user), f"p:g:{layout.ids[last]}", check=False)
        await api.reply(user)
        await api.tap(user, api.last(user), "All my portals")
        page = page_of(await api.reply(user))
        assert page.portals[-1] == (layout.ids[last], layout.label(last, expected, current=last))
        await api.send(user, "/staff")
        # Both of them and the outsider.
        assert (await api.reply(user)).text.startswith(f"{last} · 3 people on the staff")
    assert shapes[0] == [(8, ["1/2", "▶️"]), (2, ["◀️", "2/2"])]
    assert shapes[1] == [(8, ["1/2", "▶️"]), (3, ["◀️", "2/2"])]


async def statements(bot: RunningBot, action: Callable[[], Awaitable[object]]) -> int:
    with counting(bot.app.engine) as counter:
        await action()
        await bot.settle()
    return counter.count


async def statements_per_step(
    bot: RunningBot, layout: Layout, telegram_id: int, portal: str
) -> list[int]:
    """The list, a tap into the portal's menu, the way back to its page, going there, /staff."""
    api = bot.api
    user = api.user(telegram_id, "Человек", language_code="en")
    # The first update stores the Telegram language: not what is counted.
    await api.send(user, "/start")
    await api.replies(user, count=2)
    tapped = layout.ids[portal]
    counts = [await statements(bot, lambda: api.send(user, "/portals"))]
    listing = await api.reply(user)
    counts.append(
        await statements(bot, lambda: api.press(user, listing, f"p:m:{tapped}", check=False))
    )
    menu = await api.reply(user)
    back = back_data(menu)
    counts.append(await statements(bot, lambda: api.press(user, menu, back)))
    await api.reply(user)
    counts.append(
        await statements(bot, lambda: api.press(user, menu, f"p:g:{tapped}", check=False))
    )
    assert "This is your current portal." in (await api.reply(user)).text
    counts.append(await statements(bot, lambda: api.send(user, "/staff")))
    assert (await api.reply(user)).text.startswith(f"{portal} ·")
    return counts


async def test_statements_per_update_do_not_grow_with_the_portals(
    running_bot: RunningBot, nika: Layout
) -> None:
    # The outbox job would add its own statements to the counts.
    running_bot.app.dispatcher.workflow_data["scheduler"].pause()

    on_five = await statements_per_step(running_bot, nika, FIVE, "Бета")
    on_25 = await statements_per_step(running_bot, nika, NIKA, "Бета")
    # And on either side of the boundary, tapping a portal of the second page.
    ten = [name for name in BOUNDARY_LIST if name != ELEVENTH]
    boundary = await build(running_bot, BOUNDARY_PORTALS, {ELEVEN: BOUNDARY_LIST, TEN: ten})
    on_ten = await statements_per_step(running_bot, boundary, TEN, "Ясень")
    on_eleven = await statements_per_step(running_bot, boundary, ELEVEN, "Ясень")

    print(on_five, on_25, on_ten, on_eleven)
    assert on_25 == on_five == on_ten == on_eleven
