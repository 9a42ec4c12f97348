"""Finding oneself on linked portals by sharing one's own phone number, end to end."""

import pytest
from sqlalchemy import func, select

from services import sync
from services.bitrix import parse_webhook
from services.phones import normalise_phone
from storage.models import Membership, Person, Portal
from tests.bitrix_standin import BitrixStandIn, StandInDepartment, StandInUser

NETWORK = {
    "portals": [
        {"address": "spb.acme.ru", "name": "Acme SPb", "plan": "standard"},
        {"address": "kzn.acme.ru", "name": "Acme Kazan", "plan": "standard"},
    ],
    "people": [
        {
            "telegram_id": 1001,
            "name": "Anna",
            "memberships": [
                {"portal": "spb.acme.ru", "role": "admin"},
                {"portal": "kzn.acme.ru", "role": "admin"},
            ],
        }
    ],
}


def test_numbers_are_normalised_whatever_their_format() -> None:
    for written in ("+7 (912) 345-00-01", "8 912 345 00 01", "89123450001", "79123450001"):
        assert normalise_phone(written) == "+79123450001"
    assert normalise_phone("447911123456", international=True) == "+447911123456"
    assert normalise_phone("call me") is None
    assert normalise_phone("12") is None


@pytest.fixture
async def portals(running_bot):
    """Two linked portals: Vera is on both, Gleb on Kazan only."""
    await running_bot.seed(NETWORK)
    async with BitrixStandIn() as spb, BitrixStandIn() as kzn:
        for standin in (spb, kzn):
            standin.add_department(StandInDepartment(1, "Company"))
        spb.add_user(
            StandInUser(10, "Vera", "Sokolova", mobile="8 (912) 345-00-01", departments=[1])
        )
        kzn.add_user(StandInUser(77, "Vera", "Sokolova", work_phone="+7 912 345 00 01"))
        kzn.add_user(StandInUser(78, "Gleb", "Orlov", mobile="+7 913 000-00-02"))
        syncer = sync.Syncer(running_bot.session_factory, clock=running_bot.clock)
        async with running_bot.session_factory() as session:
            for address, standin in (("spb.acme.ru", spb), ("kzn.acme.ru", kzn)):
                portal = await session.scalar(select(Portal).where(Portal.address == address))
                assert portal is not None
                webhook = parse_webhook(standin.webhook_url, allow_loopback_http=True)
                await sync.link_portal(
                    session, portal, webhook, actor=None, now=running_bot.clock()
                )
            await session.commit()
            ids = (await session.scalars(select(Portal.id).order_by(Portal.id))).all()
        for portal_id in ids:
            assert (await syncer.sync(portal_id, trigger=sync.Trigger.COMMAND_LINE)).ok
        yield running_bot


async def people_count(bot) -> int:
    async with bot.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(Person)) or 0)


async def test_a_stranger_is_offered_the_button_and_found_on_two_portals(portals) -> None:
    api = portals.api
    vera = api.user(5001, "Vera", language_code="en")

    await api.send(vera, "/start")
    _greeting, _listing, offer = await api.replies(vera, count=3)
    assert offer.reply_markup["keyboard"][0][0]["request_contact"] is True

    # Telegram gives the number with its country code and no plus.
    await api.send_contact(vera, "79123450001")
    found, listing = await api.replies(vera, count=2)

    assert "Acme Kazan" in found.text and "Acme SPb" in found.text
    assert found.reply_markup == {"remove_keyboard": True}
    shown = [text.removesuffix(" ✓") for text in listing.button_texts()[:2]]
    assert sorted(shown) == ["▫️ Acme Kazan", "▫️ Acme SPb"]
    await portals.settle()
    async with portals.session_factory() as session:
        person = await session.scalar(select(Person).where(Person.telegram_id == 5001))
        assert person is not None
        roles = (
            await session.execute(
                select(Membership.role, Membership.external_id).where(
                    Membership.person_id == person.id
                )
            )
        ).all()
    assert sorted(roles) == [("employee", "10"), ("employee", "77")]

    # The next sync still knows her by her Bitrix24 ids: nobody new, nobody left.
    syncer = sync.Syncer(portals.session_factory, clock=portals.clock)
    for portal_id in (1, 2):
        outcome = await syncer.sync(portal_id, trigger=sync.Trigger.SCHEDULE)
        assert outcome.changes == sync.SyncChanges()


async def test_someone_elses_contact_is_refused(portals) -> None:
    api = portals.api
    gleb = api.user(5002, "Gleb", language_code="en")
    before = await people_count(portals)

    await api.send_contact(gleb, "+79130000002", user_id=4242)
    refusal = await api.reply(gleb)
    await api.send_contact(gleb, "+79130000002", user_id=None)
    second = await api.reply(gleb)
    await portals.settle()

    assert "your own number" in refusal.text and "your own number" in second.text
    assert await people_count(portals) == before
    async with portals.session_factory() as session:
        assert await session.scalar(select(Person).where(Person.telegram_id == 5002)) is None


async def test_a_member_finds_more_portals_from_the_list(portals) -> None:
    api = portals.api
    anna = api.user(1001, "Anna", language_code="en")
    gleb = api.user(5003, "Gleb", language_code="en")

    await api.send(anna, "/portals")
    listing = await api.reply(anna)
    assert "📱 Find my other portals by phone" in listing.button_texts()

    await api.send(gleb, "/start")
    await api.replies(gleb, count=3)
    await api.send_contact(gleb, "+7 913 000 00 02")
    found, _listing = await api.replies(gleb, count=2)
    assert "Acme Kazan" in found.text and "Acme SPb" not in found.text


async def test_no_match_changes_nothing(portals) -> None:
    api = portals.api
    nobody = api.user(5004, "Nobody", language_code="en")
    before = await people_count(portals)

    await api.send_contact(nobody, "79990000000")
    answer = await api.reply(nobody)
    await portals.settle()

    assert "No linked portal has +7********00 on its staff" in answer.text
    assert await people_count(portals) == before
