"""`branchbot reminders`, run through the command's entry point."""

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from domain.rules import Plan, Role
from services.clock import utc_now
from services.reminders import owe_due
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Notice, Person
from tests import factories

OUTCOMES = {
    "Anna": ("sent", None),
    "Boris": ("unreachable", "blocked the bot"),
    "Vera": ("unreachable", "never started the bot"),
    "Gleb": ("unreachable", "has no Telegram account linked"),
}


async def seed(url: str, *, owe: bool) -> None:
    """A branch whose demo ends in two days (the 3-day reminder is due), and its admins."""
    engine = create_engine(url)
    await upgrade(engine)
    async with create_session_factory(engine)() as session:
        head = await factories.portal(session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True)
        branch = await factories.portal(
            session,
            "kzn.acme.ru",
            "Acme Kazan",
            Plan.FREE,
            head=head,
            demo_until=utc_now() + timedelta(days=2),
        )
        people = [
            await factories.person(session, "Anna", 1001),
            await factories.person(session, "Boris", 1002),
            await factories.person(session, "Vera", 1003, started=False),
            await factories.person(session, "Gleb"),
        ]
        await factories.member(session, people[0], head, Role.ADMIN)
        for admin in people[1:]:
            await factories.member(session, admin, branch, Role.ADMIN)
        await session.commit()

        if owe:
            await owe_due(session, utc_now())
            # What the courier records for each of them.
            rows = await session.execute(select(Notice, Person).join(Person))
            for notice, person in rows.all():
                notice.status, notice.last_error = OUTCOMES[person.name]
                notice.sent_at = utc_now() if notice.status == "sent" else None
            await session.commit()
    await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{os.fspath(tmp_path)}/cli.sqlite3"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TIMEZONE", "Europe/Moscow")
    monkeypatch.chdir(tmp_path)  # no .env of the working copy
    return url


def test_what_is_due_while_the_bot_is_down(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(seed(database, owe=False))

    assert main(["reminders"]) == 0

    out = capsys.readouterr().out
    assert "Due, not owed yet (the running bot sends them on its next run): 1" in out
    assert "kzn.acme.ru: demo ends " in out
    assert "(UTC+03:00)  3-day reminder  to 4 people" in out
    assert "Sent: 0" in out
    assert "Could not be reached: 0" in out


def test_what_was_sent_and_who_could_not_be_reached(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(seed(database, owe=True))

    assert main(["reminders"]) == 0

    out = capsys.readouterr().out
    sent = out.split("Sent: ", 1)[1].split("\n\n", 1)[0]
    unreachable = out.split("Could not be reached: ", 1)[1].split("\n\n", 1)[0]
    assert "Due, not owed yet (the running bot sends them on its next run): 0" in out
    assert sent.startswith("1\n")
    assert "Anna (1001)  kzn.acme.ru: demo ends" in sent
    assert unreachable.startswith("3\n")
    assert "Boris (1002)  kzn.acme.ru: demo ends" in unreachable
    assert "3-day  blocked the bot" in unreachable
    assert "Vera (1003)" in unreachable and "never started the bot" in unreachable
    assert "Gleb (no Telegram account)" in unreachable
    assert "Anna" not in unreachable


def test_a_limit_shortens_each_part(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database, owe=True))

    assert main(["reminders", "--limit", "1"]) == 0

    out = capsys.readouterr().out
    assert "Could not be reached: 3" in out
    assert "  ... and 2 more" in out
