"""Sending many due reminders through `branchbot run`, killed in the middle and started again.

A network of one head and `--count` free branches, each with one admin, whose demos end in a
little over two days: the 3-day reminder is due to every admin. The bot runs as a separate
process against the local Bot API stand-in (which refuses anything above Telegram's rates), is
killed with SIGKILL once half the reminders are out, and started again. Prints the configured
pace, the rate achieved while sending, the most messages in any one-second window, and what
each admin received in the end.

    .venv/bin/python -m bench.reminders [--count 10000] [--rate 25]
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bot.config import load_settings
from domain.rules import Plan, Role
from services.clock import utc_now
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Membership, Notice, Person, Portal
from tests.botapi.models import FakeChat
from tests.botapi.server import TEST_TOKEN, FakeBotAPI

FIRST_TELEGRAM_ID = 100_000
HEAD_ID = 1
CHUNK = 2_000


async def seed(url: str, count: int) -> None:
    """The head and its branches, admins already started, written in bulk."""
    now = utc_now()
    demo_until = now + timedelta(days=2, hours=1)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(
                insert(Portal),
                [_portal(HEAD_ID, "acme.ru", Plan.ENTERPRISE, now, is_head=True)],
            )
            for start in range(0, count, CHUNK):
                numbers = range(start, min(count, start + CHUNK))
                await connection.execute(
                    insert(Portal),
                    [
                        _portal(
                            2 + n,
                            f"b{n}.acme.ru",
                            Plan.FREE,
                            now,
                            head_id=HEAD_ID,
                            demo=demo_until,
                        )
                        for n in numbers
                    ],
                )
                await connection.execute(
                    insert(Person),
                    [
                        {
                            "id": 1 + n,
                            "telegram_id": FIRST_TELEGRAM_ID + n,
                            "name": f"Admin {n}",
                            "name_folded": f"admin {n}",
                            "language": "en",
                            "started_at": now,
                            "created_at": now,
                        }
                        for n in numbers
                    ],
                )
                await connection.execute(
                    insert(Membership),
                    [
                        {"person_id": 1 + n, "portal_id": 2 + n, "role": Role.ADMIN.value}
                        for n in numbers
                    ],
                )
    finally:
        await engine.dispose()


def _portal(
    portal_id: int,
    address: str,
    plan: Plan,
    now: Any,
    *,
    is_head: bool = False,
    head_id: int | None = None,
    demo: Any = None,
) -> dict[str, Any]:
    return {
        "id": portal_id,
        "address": address,
        "name": address,
        "plan": plan.value,
        "is_head": is_head,
        "head_id": head_id,
        "connected_at": now if head_id else None,
        "demo_until": demo,
        "ever_in_network": head_id is not None,
        "created_at": now,
    }


async def statuses(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            result = await session.execute(
                select(Notice.status, func.count()).group_by(Notice.status)
            )
            return {status: number for status, number in result.all()}
    finally:
        await engine.dispose()


async def bench(count: int, rate: float, directory: Path) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{directory}/bench.sqlite3"
    await seed(url, count)

    api = FakeBotAPI(enforce_rates=True)
    await api.start()
    for n in range(count):
        user = api.user(FIRST_TELEGRAM_ID + n, f"Admin {n}")
        api.chats[user.id] = FakeChat(user.id, "private", user=user)
        api.started.add(user.id)

    environment = {
        **os.environ,
        "BOT_TOKEN": TEST_TOKEN,
        "BOT_API_URL": api.base_url,
        "DATABASE_URL": url,
        "POLLING_TIMEOUT": "1",
        "SEND_RATE": str(rate),
        "LOG_LEVEL": "WARNING",
    }
    log = (directory / "bot.log").open("wb")

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=directory,
            env=environment,
            stdout=log,
            stderr=log,
        )

    try:
        first = await start()
        # A kill at whatever moment the bot is at once half the reminders are out.
        await _until(lambda: len(api.send_log) >= count // 2, first)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        sent_before_kill = len(api.send_log)

        second = await start()
        await _until(lambda: len(api.send_log) >= count - 1, second)
        await _settled(url, second)
        second.send_signal(signal.SIGTERM)
        await second.wait()
    finally:
        log.close()
        await api.stop()

    times = [moment for moment, _chat in api.send_log]
    runs = [times[:sent_before_kill], times[sent_before_kill:]]
    sending = sum(run[-1] - run[0] for run in runs if len(run) > 1)
    gaps = sum(len(run) - 1 for run in runs if len(run) > 1)
    achieved = gaps / sending if sending else 0.0
    # The slowest stretch of a thousand messages, to see whether the rate holds up.
    stretches = [
        (1000 - 1) / (run[start + 999] - run[start])
        for run in runs
        for start in range(0, len(run) - 999, 1000)
    ]
    received = [len(api.messages(FIRST_TELEGRAM_ID + n)) for n in range(count)]
    outcome = await statuses(url)
    return {
        "reminders": count,
        "configured pace (messages/s)": f"{rate:g}",
        "achieved rate while sending (messages/s)": f"{achieved:.2f}",
        "ratio": f"{achieved / rate:.3f}",
        "slowest 1000 in a row (messages/s)": f"{min(stretches):.2f}" if stretches else "-",
        "most messages in any 1 s window": api.max_sends_in_window(1.0),
        "most messages to one chat in any 1 s window": max(
            (api.max_sends_in_window(1.0, chat_id=FIRST_TELEGRAM_ID + n) for n in range(count)),
            default=0,
        ),
        "requests the stand-in refused (rates, limits)": len(api.violations),
        "sent before the kill": sent_before_kill,
        "received exactly once": sum(1 for number in received if number == 1),
        "duplicates after kill and restart": sum(number - 1 for number in received if number > 1),
        "never received": sum(1 for number in received if number == 0),
        "notices by outcome": ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())),
    }


async def _until(condition: Any, process: asyncio.subprocess.Process) -> None:
    """Wait for the condition; fail if the bot dies first."""
    while not condition():
        if process.returncode is not None:
            raise RuntimeError(f"the bot exited with {process.returncode}; see bot.log")
        await asyncio.sleep(0.01)


async def _settled(url: str, process: asyncio.subprocess.Process) -> None:
    """Wait until the outbox has nothing left to send (the one in flight may never arrive)."""
    while True:
        outcome = await statuses(url)
        if not outcome.get("pending") and not outcome.get("sending"):
            return
        if process.returncode is not None:
            raise RuntimeError(f"the bot exited with {process.returncode}; see bot.log")
        await asyncio.sleep(0.5)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--count", type=int, default=10_000, help="reminders (10000)")
    arguments.add_argument(
        "--rate",
        type=float,
        default=load_settings(env_file=None).send_rate,
        help="SEND_RATE for the bot (the configured default)",
    )
    options = arguments.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        figures = asyncio.run(bench(options.count, options.rate, Path(directory)))
    width = max(len(name) for name in figures)
    print(f"| {'measure':<{width}} | value")
    print(f"|{'-' * (width + 2)}|------")
    for name, value in figures.items():
        print(f"| {name:<{width}} | {value}")
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
