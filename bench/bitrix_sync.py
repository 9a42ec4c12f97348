"""Syncing a 10,000-person, 500-department portal against the Bitrix24 REST stand-in.

The stand-in keeps Bitrix24's default limits (2 requests a second, a burst of 50). Prints the
HTTP requests made against the fewest possible with `batch` (every page of 50 in batches of
50 commands), the requests refused for the rate limit, and the wall time of the read and of
the whole sync.

    .venv/bin/python -m bench.bitrix_sync [--people 10000] [--departments 500]
"""

import argparse
import asyncio
import math
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from services import sync
from services.bitrix import FastBitrixClient, parse_webhook
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Portal
from tests.bitrix_standin import BitrixStandIn, populate

MOMENT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def run(people: int, departments: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(directory) / 'bench.sqlite3'}")
        try:
            await upgrade(engine)
            factory = create_session_factory(engine)
            async with BitrixStandIn() as standin:
                populate(standin, people=people, departments=departments)
                async with factory() as session:
                    portal = Portal(
                        address="big.example.ru",
                        name="Big",
                        plan="professional",
                        created_at=MOMENT,
                    )
                    session.add(portal)
                    await session.flush()
                    webhook = parse_webhook(standin.webhook_url, allow_loopback_http=True)
                    await sync.link_portal(session, portal, webhook, actor=None, now=MOMENT)
                    await session.commit()
                    portal_id = portal.id

                read_time = 0.0

                def client(hook, limits):
                    return _Timed(FastBitrixClient(hook, limits))

                class _Timed:
                    def __init__(self, inner):
                        self.inner = inner

                    @property
                    def requests(self):
                        return self.inner.requests

                    async def batch(self, commands):
                        nonlocal read_time
                        started = time.perf_counter()
                        try:
                            return await self.inner.batch(commands)
                        finally:
                            read_time += time.perf_counter() - started

                    async def aclose(self):
                        await self.inner.aclose()

                syncer = sync.Syncer(factory, clock=lambda: MOMENT, client_factory=client)
                started = time.perf_counter()
                outcome = await syncer.sync(portal_id, trigger=sync.Trigger.COMMAND_LINE)
                total_time = time.perf_counter() - started
        finally:
            await engine.dispose()

    pages = math.ceil(people / 50) + math.ceil(departments / 50)
    fewest = math.ceil(pages / 50)
    print(f"portal: {people} people, {departments} departments; sync ok: {outcome.ok}")
    print(
        f"HTTP requests: {standin.requests} (fewest possible with batch: {fewest}; "
        f"ratio {standin.requests / fewest:.2f}, target <= 1.2)"
    )
    print(f"refused for the rate limit: {standin.refused} (target 0)")
    print(f"wall time: {total_time:.2f} s in all; {read_time:.2f} s reading from the stand-in")


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--people", type=int, default=10_000)
    arguments.add_argument("--departments", type=int, default=500)
    parsed = arguments.parse_args()
    asyncio.run(run(parsed.people, parsed.departments))


if __name__ == "__main__":
    main()
