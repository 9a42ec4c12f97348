"""Peak memory of `branchbot run` after 1,000 updates, on the largest and the smallest network.

Each size of bench/dataset.py is built in a temporary SQLite file; `branchbot run` is started
on it as a separate process polling the Bot API stand-in (tests/botapi), which runs in this
process and plays the viewer: the portal list and its pages, a branch menu, staff pages, a
search and its next page, structure pages. Each update waits for the bot's answer before the
next. Prints the process's peak resident set (VmHWM) at its first poll and after the updates.

    .venv/bin/python -m bench.memory [--updates 1000]
"""

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.dataset import (
    BRANCH_ID,
    SEARCH_TEXT,
    SIZES,
    VIEWER_TELEGRAM_ID,
    Size,
    build,
    sqlite_url,
)
from bench.process import RunningProcess, bare_bot_run, branchbot_run
from tests.botapi.models import FakeUser

ANSWER_LIMIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Figures:
    size: Size | None
    at_first_poll_kib: int
    peak_kib: int
    seconds: float


async def send(running: RunningProcess, viewer: FakeUser, text: str) -> None:
    await running.api.send(viewer, text)
    await running.api.reply(viewer, timeout=ANSWER_LIMIT_SECONDS)


async def press(running: RunningProcess, viewer: FakeUser, data: str) -> None:
    api = running.api
    query = await api.press(viewer, api.last(viewer), data, check=False)
    await api.wait_answered(query, timeout=ANSWER_LIMIT_SECONDS)


async def browse(running: RunningProcess, size: Size, count: int) -> None:
    """`count` updates going round the views, on pages that change from one round to the next."""
    viewer = running.api.user(VIEWER_TELEGRAM_ID, "Анна", language_code="en")
    list_pages = -(-size.portals // 8)
    staff_pages = -(-size.branch_people // 20)
    for number in range(count):
        step = number % 8
        if step == 0:
            await send(running, viewer, "/portals")
        elif step == 1:
            await press(running, viewer, f"pl:{number % list_pages}")
        elif step == 2:
            await press(running, viewer, f"p:m:{BRANCH_ID}")
        elif step == 3:
            await press(running, viewer, f"sp:{BRANCH_ID}:{number % staff_pages}:0")
        elif step == 4:
            await send(running, viewer, f"/staff {SEARCH_TEXT}")
        elif step == 5:
            found = running.api.last(viewer)
            later = [b for row in found.buttons() for b in row if b.get("text") == "▶️"]
            data = later[0]["callback_data"] if later else f"sp:{BRANCH_ID}:0:0"
            await press(running, viewer, str(data))
        elif step == 6:
            await press(running, viewer, f"tp:{BRANCH_ID}:{number % 10}")
        else:
            await send(running, viewer, "/structure")


async def measure(size: Size | None, directory: Path, count: int) -> Figures:
    """Figures of `branchbot run` on the size's network; of the bare bot for no size."""
    if size is None:
        serving = bare_bot_run(directory)
    else:
        path = directory / f"{size.label}.sqlite3"
        await build(size, path)
        serving = branchbot_run(sqlite_url(path), directory)
    async with serving as running:
        at_first_poll = running.peak_rss_kib()
        started = time.perf_counter()
        await browse(running, size or SIZES[0], count)
        seconds = time.perf_counter() - started
        peak = running.peak_rss_kib()
        if running.api.violations:
            raise RuntimeError(f"requests Telegram would refuse: {running.api.violations[:3]}")
    return Figures(size, at_first_poll, peak, seconds)


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        bare = await measure(None, Path(directory), count)
        smallest = await measure(SIZES[0], Path(directory), count)
        largest = await measure(SIZES[-1], Path(directory), count)
    print(f"{count} updates served by each; peak resident set (VmHWM) of the bot's process")
    print(f"{'process':<30}{'at first poll, MB':>19}{'after updates, MB':>19}{'seconds':>9}")
    for figures in (bare, smallest, largest):
        name = "bare aiogram bot, no database"
        if figures.size is not None:
            name = f"branchbot run, {figures.size.label}"
        print(
            f"{name:<30}{figures.at_first_poll_kib / 1024:>19.1f}"
            f"{figures.peak_kib / 1024:>19.1f}{figures.seconds:>9.1f}"
        )
    ratio = largest.peak_kib / smallest.peak_kib
    print(f"{'large/small (target <= 1.2; large under 150 MB)':<68}{ratio:>9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    asyncio.run(main(parser.parse_args().updates))
