"""`branchbot portal set-plan` and `branchbot audit`, run through the command's entry point."""

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from bot.cli import main
from domain.rules import GRACE_LENGTH, Plan, Role
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, Notice, Portal
from tests import factories

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def seed(url: str) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    async with create_session_factory(engine)() as session:
        head = await factories.portal(session, "acme.ru", "Acme HQ", Plan.ENTERPRISE, is_head=True)
        branch = await factories.portal(session, "spb.acme.ru", "Acme SPb", head=head)
        await factories.portal(session, "nsk.acme.ru", "Acme Nsk")
        await factories.portal(session, "lone.ru", "Lone", Plan.ENTERPRISE, is_head=True)
        anna = await factories.person(session, "Anna", 1001)
        boris = await factories.person(session, "Boris", 1002)
        await factories.member(session, anna, head, Role.ADMIN)
        await factories.member(session, boris, branch, Role.ADMIN)
        await session.commit()
    await engine.dispose()


async def read(url: str, address: str) -> tuple[Portal, list[Notice], list[AuditEntry]]:
    engine = create_engine(url)
    async with create_session_factory(engine)() as session:
        portal = (
            await session.execute(select(Portal).where(Portal.address == address))
        ).scalar_one()
        notices = list((await session.execute(select(Notice).order_by(Notice.id))).scalars())
        entries = list(
            (await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
        )
    await engine.dispose()
    return portal, notices, entries


@pytest.fixture
def database(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    url = database_url
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TIMEZONE", "Europe/Moscow")
    monkeypatch.chdir(tmp_path)  # no .env of the working copy
    run(seed(url))
    return url


def test_set_plan_to_free_makes_a_branch_incompatible(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "https://SPB.acme.ru/", "free"]) == 0

    out = capsys.readouterr().out
    assert "spb.acme.ru: plan standard -> free" in out
    assert "incompatible with its network: disconnected on" in out
    assert "(UTC+03:00)" in out
    assert "2 people will be told by the running bot" in out
    portal, notices, entries = run(read(database, "spb.acme.ru"))
    assert portal.plan == "free"
    assert portal.incompatible_until is not None
    assert portal.incompatible_until - entries[-1].at == GRACE_LENGTH
    assert {notice.kind for notice in notices} == {"branch_incompatible"}
    assert (entries[-1].action, entries[-1].outcome, entries[-1].actor) == (
        "plan",
        "ok",
        "command line",
    )


def test_set_plan_back_to_commercial_makes_it_compatible(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "spb.acme.ru", "free"]) == 0
    assert main(["portal", "set-plan", "spb.acme.ru", "basic"]) == 0

    assert "compatible with its network again" in capsys.readouterr().out
    portal, notices, _entries = run(read(database, "spb.acme.ru"))
    assert portal.incompatible_until is None
    assert [notice.kind for notice in notices].count("branch_compatible") == 2


def test_a_head_with_branches_keeps_enterprise(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "acme.ru", "professional"]) == 1

    err = capsys.readouterr().err
    assert "the plan of acme.ru was not changed" in err
    assert "The head of a network with branches must stay on the Enterprise plan." in err
    portal, notices, entries = run(read(database, "acme.ru"))
    assert (portal.plan, portal.is_head) == ("enterprise", True)
    assert notices == []
    assert (entries[-1].action, entries[-1].outcome) == ("plan", "refused")


def test_a_lone_head_leaving_enterprise_stops_being_a_head(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "lone.ru", "basic"]) == 0

    out = capsys.readouterr().out
    assert "lone.ru: plan enterprise -> basic" in out
    assert "it is no longer the head of a network" in out
    portal, notices, _entries = run(read(database, "lone.ru"))
    assert (portal.plan, portal.is_head) == ("basic", False)
    assert notices == []


def test_set_plan_on_a_standalone_portal(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "nsk.acme.ru", "standard"]) == 0
    assert "nsk.acme.ru: already on standard; nothing changed" in capsys.readouterr().out
    assert main(["portal", "set-plan", "nsk.acme.ru", "enterprise"]) == 0
    assert "nsk.acme.ru: plan standard -> enterprise" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nowhere.example.ru", "no portal has the address nowhere.example.ru"),
        ("http://acme.ru", "'http://acme.ru' is not a portal address"),
    ],
)
def test_set_plan_names_a_portal(
    database: str, capsys: pytest.CaptureFixture[str], address: str, message: str
) -> None:
    assert main(["portal", "set-plan", address, "basic"]) == 1
    assert message in capsys.readouterr().err


def test_set_plan_knows_only_the_plans(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["portal", "set-plan", "acme.ru", "gold"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gold'" in capsys.readouterr().err


def test_audit_prints_the_log_oldest_first(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["portal", "set-plan", "spb.acme.ru", "free"]) == 0
    assert main(["portal", "set-plan", "acme.ru", "basic"]) == 1
    assert main(["portal", "set-plan", "nsk.acme.ru", "basic"]) == 0
    capsys.readouterr()

    assert main(["audit"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "ok" in lines[0] and "plan" in lines[0] and "spb.acme.ru" in lines[0]
    assert "refused" in lines[1] and "acme.ru" in lines[1] and "head_plan_locked" in lines[1]
    assert "nsk.acme.ru" in lines[2] and "command line" in lines[2]

    assert main(["audit", "--portal", "https://ACME.ru/"]) == 0
    only_head = capsys.readouterr().out.splitlines()
    assert len(only_head) == 1 and "head_plan_locked" in only_head[0]

    assert main(["audit", "--limit", "1"]) == 0
    assert "nsk.acme.ru" in capsys.readouterr().out


def test_audit_of_a_quiet_portal(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--portal", "nsk.acme.ru"]) == 0
    assert "no entries for nsk.acme.ru" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["audit", "--limit", "0"])
