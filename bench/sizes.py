"""Cost per update as the network grows: SQL statements and time, for each paged view.

The three sizes of bench/dataset.py are built in temporary SQLite files; the viewer (an
administrator of every portal of the network) then asks for a middle page of the portal list,
of the measured branch's staff list, of a search in it and of its structure, through the
project's dispatcher with API calls answered in process. Updates go round the sizes one at a
time, so load from elsewhere on the machine falls on every size alike. Prints statements per
update (the most seen) and the median time, and the largest size's time over the smallest's.

    .venv/bin/python -m bench.sizes [--updates 200]
"""

import argparse
import asyncio
import itertools
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.methods import EditMessageText, SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Message, MessageEntity, Update
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import BRANCH_ID, SEARCH_TEXT, SIZES, Size, build, sqlite_url
from bench.per_update import BOT_USER, CHAT, MOMENT, PERSON, TOKEN, LocalSession
from bot.app import create_dispatcher
from bot.config import load_settings
from storage.db import create_engine, create_session_factory

PAGER = re.compile(r"^(\d+)/(\d+)$")


class WatchedSession(LocalSession):
    """Answers in process and keeps the last text and pager shown, to check each view."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.pages = 1

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's signature
    ) -> TelegramType:
        if isinstance(method, SendMessage | EditMessageText):
            self.text = method.text or ""
            self.pages = 1
            markup = method.reply_markup
            for row in getattr(markup, "inline_keyboard", None) or []:
                for button in row:
                    found = PAGER.match(button.text)
                    if found:
                        self.pages = int(found.group(2))
        return await super().make_request(bot, method, timeout)


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: object) -> None:
        self.count += 1


@dataclass
class Subject:
    """One size's database, dispatcher and bot, and what was measured on it."""

    size: Size
    engine: AsyncEngine
    dispatcher: Dispatcher
    bot: Bot
    session: WatchedSession
    counter: StatementCounter
    seconds: dict[str, list[float]] = field(default_factory=dict)
    statements: dict[str, list[int]] = field(default_factory=dict)


update_ids = itertools.count(1)


def command(text: str) -> Update:
    number = next(update_ids)
    name = text.split()[0]
    return Update(
        update_id=number,
        message=Message(
            message_id=number,
            date=MOMENT,
            chat=CHAT,
            from_user=PERSON,
            text=text,
            entities=[MessageEntity(type="bot_command", offset=0, length=len(name))],
        ),
    )


def tap(data: str) -> Update:
    number = next(update_ids)
    menu = Message(message_id=1, date=MOMENT, chat=CHAT, from_user=BOT_USER, text="x")
    return Update(
        update_id=number,
        callback_query=CallbackQuery(
            id=str(number), from_user=PERSON, chat_instance="1", data=data, message=menu
        ),
    )


@dataclass(frozen=True)
class View:
    name: str
    # The update that asks for a page of the view.
    make: Callable[[Subject, int], Update]
    # Whether a middle page is asked for; else the first, the only one a command shows.
    paged: bool = True


VIEWS = [
    View("portal list", lambda subject, page: tap(f"pl:{page}")),
    View("staff page", lambda subject, page: tap(f"sp:{BRANCH_ID}:{page}:0")),
    View("search (/staff text)", lambda _, page: command(f"/staff {SEARCH_TEXT}"), paged=False),
    View(
        "search, a later page",
        # A search this short travels in its buttons; a long one is stored, and costs one
        # statement more on each later page.
        lambda subject, page: tap(f"sf:{BRANCH_ID}:{page}:{SEARCH_TEXT}"),
    ),
    View("structure page", lambda subject, page: tap(f"tp:{BRANCH_ID}:{page}")),
]


async def feed(subject: Subject, update: Update) -> tuple[float, int]:
    before = subject.counter.count
    started = time.perf_counter()
    await subject.dispatcher.feed_update(subject.bot, update)
    return time.perf_counter() - started, subject.counter.count - before


async def middle_page(subject: Subject, view: View) -> int:
    """Show page 0, read the page count off its pager, and give the middle page."""
    await feed(subject, view.make(subject, 0))
    if "went wrong" in subject.session.text or "No portal" in subject.session.text:
        raise SystemExit(f"{subject.size.label}: the view failed: {subject.session.text!r}")
    return subject.session.pages // 2 if view.paged else 0


async def open_subject(size: Size, path: Path) -> Subject:
    url = sqlite_url(path)
    engine = create_engine(url)
    settings = load_settings(env_file=None, bot_token=TOKEN, database_url=url)
    session_factory = create_session_factory(engine)
    session = WatchedSession()
    counter = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    subject = Subject(
        size=size,
        engine=engine,
        dispatcher=create_dispatcher(settings=settings, session_factory=session_factory),
        bot=Bot(TOKEN, session=session),
        session=session,
        counter=counter,
    )
    return subject


async def measure(subjects: list[Subject], view: View, count: int) -> dict[str, int]:
    name, make = view.name, view.make
    pages = {subject.size.label: await middle_page(subject, view) for subject in subjects}
    for subject in subjects:
        subject.seconds[name], subject.statements[name] = [], []
        for _ in range(20):  # warm the connection, the caches and SQLite's pages
            await feed(subject, make(subject, pages[subject.size.label]))
    for round_number in range(count):
        # Every size in turn, starting from a different one each round.
        shift = round_number % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            seconds, statements = await feed(subject, make(subject, pages[subject.size.label]))
            subject.seconds[name].append(seconds)
            subject.statements[name].append(statements)
    return pages


def print_table(subjects: list[Subject], pages: dict[str, dict[str, int]], count: int) -> None:
    smallest, largest = subjects[0], subjects[-1]
    print(f"median of {count} updates per view and size, sizes interleaved update by update")
    print(
        "sizes: "
        + "; ".join(
            f"{s.size.label} = {s.size.portals} portals, branch of {s.size.branch_people} in "
            f"{s.size.departments} departments, {s.size.people_in_all} people in all"
            for s in subjects
        )
    )
    header = f"{'view':<22}{'size':<8}{'page':>6}{'statements':>12}{'ms/update':>11}"
    print(header + f"{'large/small':>13}")
    for name in (view.name for view in VIEWS):
        for subject in subjects:
            median_ms = statistics.median(subject.seconds[name]) * 1000
            counts = set(subject.statements[name])
            shown = str(max(counts)) if len(counts) == 1 else f"{min(counts)}-{max(counts)}"
            ratio = ""
            if subject is largest:
                times = [statistics.median(s.seconds[name]) for s in (largest, smallest)]
                ratio = f"{times[0] / times[1]:>13.2f}"
            page = pages[name][subject.size.label] + 1
            print(
                f"{name:<22}{subject.size.label:<8}{page:>6}{shown:>12}{median_ms:>11.2f}{ratio}"
            )


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        subjects: list[Subject] = []
        for size in SIZES:
            path = Path(directory) / f"{size.label}.sqlite3"
            seconds = await build(size, path)
            print(f"built {size.label} in {seconds:.1f} s ({path.stat().st_size / 2**20:.0f} MB)")
            subjects.append(await open_subject(size, path))
        pages: dict[str, dict[str, int]] = {}
        for view in VIEWS:
            pages[view.name] = await measure(subjects, view, count)
        for subject in subjects:
            await subject.engine.dispose()
    print_table(subjects, pages, count)


def run(arguments: Any) -> None:
    asyncio.run(main(arguments.updates))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="updates per view and size")
    run(parser.parse_args())
