"""The `branchbot` command: configuration errors, migrate, import, and a real `run`."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.cli import main
from storage.db import create_engine, create_session_factory
from storage.models import Membership, Person, Portal
from tests.botapi.server import TEST_TOKEN, FakeBotAPI

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "network.json"


@pytest.fixture
def environment(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory (no .env) and environment for the command."""
    for name in ("BOT_TOKEN", "DATABASE_URL", "BOT_API_URL", "LOG_LEVEL", "TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    return tmp_path


async def counts(database_url: str) -> tuple[int, int, int]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            return (
                await session.scalar(select(func.count()).select_from(Portal)) or 0,
                await session.scalar(select(func.count()).select_from(Person)) or 0,
                await session.scalar(select(func.count()).select_from(Membership)) or 0,
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "BOT_TOKEN is not set"),
        ({"BOT_TOKEN": "not a token"}, "BOT_TOKEN is malformed"),
        ({"BOT_TOKEN": TEST_TOKEN, "BOT_API_URL": "ftp://x"}, "BOT_API_URL must be"),
        ({"BOT_TOKEN": TEST_TOKEN, "DATABASE_URL": "mysql://x"}, "DATABASE_URL must be"),
        ({"BOT_TOKEN": TEST_TOKEN, "TIMEZONE": "Mars/Olympus"}, "is not a known time zone"),
        ({"BOT_TOKEN": TEST_TOKEN, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"BOT_TOKEN": TEST_TOKEN, "SEND_RATE": "0"}, "SEND_RATE: Input should be greater than 0"),
        ({"BOT_TOKEN": TEST_TOKEN, "INVITE_TTL_DAYS": "-1"}, "INVITE_TTL_DAYS: Input should be"),
        ({"BOT_TOKEN": TEST_TOKEN, "POLLING_TIMEOUT": "soon"}, "POLLING_TIMEOUT: Input should be"),
    ],
)
def test_bad_configuration_is_one_clear_line(
    environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    message: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    assert main(["run"]) == 2

    error = capsys.readouterr().err
    assert message in error
    assert len(error.strip().splitlines()) == 1
    assert "Traceback" not in error and TEST_TOKEN not in error


def test_env_file_is_read(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (environment / ".env").write_text("BOT_TOKEN=broken\n")
    assert main(["run"]) == 2
    assert "BOT_TOKEN is malformed" in capsys.readouterr().err


async def test_migrate_then_import_all_or_nothing_and_idempotent(
    environment: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out

    broken = json.loads(EXAMPLE.read_text())
    broken["people"][3]["memberships"][0]["portal"] = "nowhere.acme.ru"
    broken["portals"][0]["plan"] = "gold"
    bad_file = environment / "broken.json"
    bad_file.write_text(json.dumps(broken))
    assert await asyncio.to_thread(main, ["import", str(bad_file)]) == 1
    error = capsys.readouterr().err
    assert 'people[3].memberships[0].portal: no such portal "nowhere.acme.ru"' in error
    assert "portals[0].plan" in error
    assert await counts(database_url) == (0, 0, 0)

    assert await asyncio.to_thread(main, ["import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    loaded = await counts(database_url)
    assert loaded[0] == 5 and loaded[1] > 10

    assert await asyncio.to_thread(main, ["import", str(EXAMPLE)]) == 0
    assert "Nothing changed." in capsys.readouterr().out
    assert await counts(database_url) == loaded

    assert await asyncio.to_thread(main, ["import", str(environment / "missing.json")]) == 1


async def test_run_serves_until_sigterm_and_stops_cleanly(
    bot_api: FakeBotAPI, tmp_path: Path, database_url: str
):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BOT_TOKEN", "DATABASE_URL", "BOT_API_URL")
    }
    environment |= {
        "BOT_TOKEN": TEST_TOKEN,
        "BOT_API_URL": bot_api.base_url,
        "DATABASE_URL": database_url,
        "POLLING_TIMEOUT": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stranger = bot_api.user(31337, "Stranger", language_code="en")
        for _ in range(300):
            if any(call.method == "getUpdates" for call in bot_api.calls):
                break
            await asyncio.sleep(0.05)
        await bot_api.send(stranger, "/start")
        greeting, _listing = await bot_api.replies(stranger, count=2, timeout=15)
        assert "Hello!" in greeting.text

        commands_ru = bot_api.my_commands(None, "ru")
        commands_en = bot_api.my_commands(None, "en")
        assert [c["command"] for c in commands_en][:3] == ["portals", "staff", "structure"]
        assert commands_ru[0]["description"] == "мои порталы"
        assert commands_en[0]["description"] == "my portals"
        # Long enough for the outbox's job (every 2 seconds) to have run.
        await asyncio.sleep(2.5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)

    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "Traceback" not in log and TEST_TOKEN.split(":")[1] not in log
    assert "bot stopped" in log
    # At INFO the log is an operator's: no line for each run of a scheduled job.
    assert "Running job" not in log and "executed successfully" not in log
