"""Sending what the outbox owes, within Telegram's limits, each notice at most once.

The courier takes the due notices a few hundred people at a time. A person's notices of one
kind go out together when the kind has a digest. For each message, in this order: check the
notices still have their reason, wait for the pace (a long wait checks again), claim them
(committed), send, record the outcome (committed). A crash between the claim and the outcome
leaves the claimed notices marked, and the next start sets them aside as `uncertain` instead
of sending them twice: Telegram has no way to ask whether a message arrived.
"""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import Response
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notices.registry import KINDS, Composed, NoticeKind, compose
from domain.language import language_for
from services import outbox
from services.clock import Clock
from services.notices import params_of
from services.outbox import Status
from storage.connectivity import describe_error, is_outage
from storage.models import Notice, Person

logger = logging.getLogger(__name__)

# aiogram reads every answer as `Response[Message]`; pydantic keeps such a class only while
# something refers to it, and building it again costs milliseconds. This keeps it.
SEND_MESSAGE_ANSWER = Response[Message]

PEOPLE_PER_BATCH = 500
# How many queued messages are looked at for one whose chat is free, before waiting.
LOOKAHEAD = 64
# A pacer's wait longer than this (a 429, say) checks again that the notices still hold.
RECHECK_AFTER = 1.0
# How long stopping waits for the message in flight.
STOP_TIMEOUT = 10.0


# Limitation: the bot's answers to people are not paced here; SEND_RATE leaves them room
# below Telegram's ~30 a second, and a notice may follow an answer in one chat within a second.
class Pacer:
    """Keeps sends below a global rate and at most one a second to the same chat.

    A send may start once (1) 1/rate has passed since the previous start, (2) the send
    `capacity` places back has *finished* a whole window ago, and (3) the last send to the same
    chat finished `per_chat_interval` ago. Counting from the end of earlier requests means that
    however long a request travels, Telegram cannot see more than `capacity` sends in any
    window, nor two to one chat within the interval.
    """

    def __init__(
        self,
        per_second: float,
        per_chat_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_second = per_second
        self.spacing = 1.0 / per_second
        self.capacity = max(1, math.floor(per_second))
        self.window = max(1.0, self.capacity / per_second)
        self.per_chat_interval = per_chat_interval
        self.monotonic = monotonic
        self.sleep = sleep
        self.next_start = 0.0
        self.held_until = 0.0
        self.finished_at: deque[float] = deque(maxlen=self.capacity)
        self.chat_free_at: dict[int, float] = {}

    def chat_ready_at(self, chat_id: int) -> float:
        return self.chat_free_at.get(chat_id, 0.0)

    def ready_at(self, chat_id: int) -> float:
        """The earliest moment (monotonic) a message to this chat may start."""
        moment = max(self.next_start, self.held_until, self.chat_ready_at(chat_id))
        if len(self.finished_at) == self.capacity:
            moment = max(moment, self.finished_at[0] + self.window)
        return moment

    async def wait(self, chat_id: int) -> None:
        """Sleep until a message to this chat may start, and count it as started."""
        while True:
            now = self.monotonic()
            moment = self.ready_at(chat_id)
            if moment <= now:
                break
            await self.sleep(moment - now)
        # From the planned moment, not the later wake-up, so that slow sends are made up for
        # by quicker ones (a quarter of a window at most, so bursts stay short); the window
        # rule above caps every second whatever happens.
        self.next_start = max(moment, now - self.window) + self.spacing

    def finished(self, chat_id: int) -> None:
        """The request to this chat has been answered (whatever the answer)."""
        now = self.monotonic()
        self.finished_at.append(now)
        self.chat_free_at[chat_id] = now + self.per_chat_interval
        if len(self.chat_free_at) > 10_000:
            self.chat_free_at = {
                chat: moment for chat, moment in self.chat_free_at.items() if moment > now
            }

    def hold(self, seconds: float) -> None:
        """Telegram asked us to wait (429): nobody is sent anything until then."""
        self.held_until = max(self.held_until, self.monotonic() + seconds)


class Attempt(Enum):
    DONE = "done"
    # Telegram asked to wait (429): the message goes again after the wait.
    AGAIN = "again"


@dataclass
class Parcel:
    """Due notices of one kind to one person, sent in as few messages as the kind allows."""

    person: Person
    kind: str
    notices: list[Notice] = field(default_factory=list)


@dataclass
class Tally:
    """What one delivery run did, by outcome, counted in notices."""

    messages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, status: Status, count: int = 1) -> None:
        self.outcomes[status.value] = self.outcomes.get(status.value, 0) + count


class Courier:
    """Delivers the outbox; one per process, so two runs never send the same notice twice.

    Several instances may deliver one outbox at once: each message's notices are claimed in
    the database just before it is sent (see `outbox.claim`), by one instance only.
    """

    def __init__(
        self,
        bot: Bot,
        session_factory: async_sessionmaker[AsyncSession],
        i18n: I18n,
        clock: Clock,
        pacer: Pacer,
        zone: ZoneInfo | None = None,
    ) -> None:
        self.bot = bot
        self.session_factory = session_factory
        self.i18n = i18n
        self.clock = clock
        self.pacer = pacer
        self.zone = zone or ZoneInfo("UTC")
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.kicked: asyncio.Task[int] | None = None

    async def recover(self) -> int:
        """At start-up: what a stopped process left claimed is set aside, never sent twice."""
        async with self.lock, self.session_factory() as session:
            interrupted = await outbox.mark_interrupted(session)
            await session.commit()
        if interrupted:
            logger.warning(
                "%s notices were being sent when the bot stopped; they are not sent again",
                interrupted,
            )
        return interrupted

    async def deliver_due(self, batch: int = PEOPLE_PER_BATCH) -> int:
        """Send the notices that are due; returns how many notices were delivered."""
        async with self.lock:
            return await self._deliver(batch)

    async def deliver_if_idle(self) -> int:
        """The scheduled run: a delivery already under way takes up what is new by itself.

        A database outage is logged and waited out: the next run tries again, and a notice
        keeps its claim or its place in the outbox.
        """
        if self.lock.locked():
            return 0
        try:
            return await self.deliver_due()
        except Exception as error:
            if not is_outage(error):
                raise
            logger.warning(
                "the outbox waits for the database (%s); the next run tries again",
                describe_error(error),
            )
            return 0

    def kick(self) -> None:
        """Start delivering now, in the background, unless a delivery is under way already."""
        if self.lock.locked() or self.stopping.is_set():
            return
        if self.kicked is None or self.kicked.done():
            self.kicked = asyncio.get_running_loop().create_task(self._deliver_logging_failure())

    async def _deliver_logging_failure(self) -> int:
        try:
            return await self.deliver_if_idle()
        except Exception:
            logger.exception("delivering the outbox failed; the next run tries again")
            return 0

    async def stop(self) -> None:
        """Finish the message in flight and stop; what is left is sent after the next start."""
        self.stopping.set()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                async with self.lock:
                    pass
                if self.kicked is not None:
                    await self.kicked
        except TimeoutError:
            logger.warning("the courier did not stop within %s s", STOP_TIMEOUT)

    async def _deliver(self, batch: int) -> int:
        tally = Tally()
        seen: set[int] = set()
        async with self.session_factory() as session:
            while not self.stopping.is_set():
                rows = await outbox.due_notices(session, self.clock(), batch)
                fresh = [(notice, person) for notice, person in rows if notice.id not in seen]
                if not fresh:
                    break
                seen.update(notice.id for notice, _person in fresh)
                await self._send_parcels(session, _parcels(fresh), tally)
        delivered = tally.outcomes.get(Status.SENT.value, 0)
        if tally.outcomes:
            logger.info(
                "outbox: %s messages sent for %s notices; outcomes %s",
                tally.messages,
                delivered,
                tally.outcomes,
            )
        return delivered

    async def _send_parcels(
        self, session: AsyncSession, parcels: list[Parcel], tally: Tally
    ) -> None:
        queue = deque(parcels)
        while queue and not self.stopping.is_set():
            rest = await self._send_next(session, self._next(queue), tally)
            if rest is not None:
                # Its next message waits for the chat; the others go meanwhile.
                queue.appendleft(rest)
            await session.commit()

    def _next(self, queue: deque[Parcel]) -> Parcel:
        """The first queued parcel whose chat is free now, else the one free soonest."""
        now = self.pacer.monotonic()
        best_index, best_moment = 0, math.inf
        for index in range(min(len(queue), LOOKAHEAD)):
            chat_id = queue[index].person.telegram_id
            moment = self.pacer.chat_ready_at(chat_id) if chat_id is not None else 0.0
            if moment <= now:
                best_index = index
                break
            if moment < best_moment:
                best_index, best_moment = index, moment
        parcel = queue[best_index]
        del queue[best_index]
        return parcel

    async def _pause_for(self, chat_id: int) -> float:
        """The pacer's wait, cut short when the bot is stopping; returns how long it was."""
        began = self.pacer.monotonic()
        waiting = asyncio.ensure_future(self.pacer.wait(chat_id))
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not waiting.done():
            waiting.cancel()
        return self.pacer.monotonic() - began

    async def _chat_of(self, session: AsyncSession, parcel: Parcel, tally: Tally) -> int | None:
        """The person's chat; None when they cannot be written to, and the notices say so.

        The person is as loaded with the batch; one who blocked the bot since is found out by
        Telegram's answer.
        """
        person = parcel.person
        reachable = person.started_at is not None and person.blocked_at is None
        if person.telegram_id is not None and reachable:
            return person.telegram_id
        if person.telegram_id is None:
            reason = outbox.NOT_LINKED
        elif person.blocked_at is not None:
            reason = outbox.BLOCKED
        else:
            reason = outbox.NEVER_STARTED
        await outbox.record(session, parcel.notices, Status.UNREACHABLE, reason, unless_taken=True)
        tally.add(Status.UNREACHABLE, len(parcel.notices))
        logger.debug(
            "person %s %s; %s notices unreachable", person.id, reason, len(parcel.notices)
        )
        return None

    async def _send_next(
        self, session: AsyncSession, parcel: Parcel, tally: Tally
    ) -> Parcel | None:
        """Send the parcel's first message; returns what is left of the parcel, if anything."""
        chat_id = await self._chat_of(session, parcel, tally)
        if chat_id is None:
            return None
        kind = KINDS.get(parcel.kind)
        if kind is None:
            reason = f"no text for notice kind {parcel.kind!r}"
            await outbox.record(session, parcel.notices, Status.FAILED, reason, unless_taken=True)
            tally.add(Status.FAILED, len(parcel.notices))
            logger.error("notices of unknown kind %s cannot be sent", parcel.kind)
            return None

        # Checked and written before the wait, so that only the claim and the request itself
        # lie between the pacer's go and Telegram's answer; a long wait checks again.
        while True:
            notices = await self._still_owed(session, kind, parcel, self.clock(), tally)
            if not notices:
                return None
            message = await self._compose_or_fail(session, kind, parcel.person, notices, tally)
            if message is None:
                return None
            waited = await self._pause_for(chat_id)
            if self.stopping.is_set():
                return None
            if waited <= RECHECK_AFTER:
                break
            parcel.notices = notices

        covered, rest = notices[: message.covers], notices[message.covers :]
        claimed = await outbox.claim(session, covered)
        await session.commit()
        if not claimed:
            # Another instance sends them, or is claiming them this instant: what it has not
            # taken is tried again, in a message composed afresh.
            left = await outbox.still_pending(session, notices)
            return Parcel(parcel.person, parcel.kind, left) if left else None
        # Limitation: a crash from here until the outcome is committed leaves these notices
        # `uncertain`; they are not sent again, though they may not have arrived.
        attempt = await self._send(session, parcel.person, chat_id, message, covered, tally)
        if attempt is Attempt.AGAIN:
            # Telegram said to wait: the same notices go again, first, once the wait is over.
            rest = covered + rest
        return Parcel(parcel.person, parcel.kind, rest) if rest else None

    async def _compose_or_fail(
        self,
        session: AsyncSession,
        kind: NoticeKind,
        person: Person,
        notices: list[Notice],
        tally: Tally,
    ) -> Composed | None:
        try:
            return self._compose(kind, person, notices)
        except Exception as error:
            logger.exception("notices %s could not be rendered", [n.id for n in notices])
            reason = f"could not be rendered: {error!r}"
            await outbox.record(session, notices, Status.FAILED, reason, unless_taken=True)
            tally.add(Status.FAILED, len(notices))
            return None

    async def _still_owed(
        self,
        session: AsyncSession,
        kind: NoticeKind,
        parcel: Parcel,
        now: datetime,
        tally: Tally,
    ) -> list[Notice]:
        if kind.obsolete is None:
            return parcel.notices
        owed: list[Notice] = []
        for notice in parcel.notices:
            reason = await kind.obsolete(session, parcel.person.id, params_of(notice), now)
            if reason is None:
                owed.append(notice)
                continue
            await outbox.record(session, [notice], Status.OBSOLETE, reason, unless_taken=True)
            tally.add(Status.OBSOLETE)
            logger.info("notice %s is not sent: %s", notice.id, reason)
        return owed

    def _compose(self, kind: NoticeKind, person: Person, notices: list[Notice]) -> Composed:
        locale = language_for(person.language, person.telegram_language)
        with self.i18n.context(), self.i18n.use_locale(locale):
            return compose(kind, [params_of(notice) for notice in notices], self.zone)[0]

    async def _send(
        self,
        session: AsyncSession,
        person: Person,
        chat_id: int,
        message: Composed,
        notices: list[Notice],
        tally: Tally,
    ) -> Attempt:
        """One request to Telegram, and its outcome on every notice the message carries."""
        ids = [notice.id for notice in notices]
        try:
            await self.bot.send_message(
                chat_id, **message.text.as_kwargs(), reply_markup=message.markup
            )
        except TelegramRetryAfter as error:
            self.pacer.finished(chat_id)
            self.pacer.hold(error.retry_after)
            logger.warning(
                "Telegram asks to wait %s s; notices %s are kept", error.retry_after, ids
            )
            reason = f"429: retry after {error.retry_after} s"
            await outbox.record(session, notices, Status.PENDING, reason)
            return Attempt.AGAIN
        except TelegramForbiddenError as error:
            self.pacer.finished(chat_id)
            status = Status.UNREACHABLE
            await outbox.record(session, notices, status, _forbidden_reason(error.message))
            person.blocked_at = self.clock()
            logger.info("person %s cannot be written to: %s", person.id, error.message)
        except TelegramBadRequest as error:
            self.pacer.finished(chat_id)
            status = Status.UNREACHABLE if "chat not found" in error.message else Status.FAILED
            await outbox.record(session, notices, status, error.message)
            logger.warning("notices %s refused: %s", ids, error.message)
        except (TelegramNetworkError, TelegramServerError) as error:
            self.pacer.finished(chat_id)
            # Limitation: a request that timed out after Telegram took it is sent again.
            later = await outbox.retry_later(session, notices, self.clock(), str(error))
            status = Status.PENDING if later else Status.FAILED
        except TelegramAPIError as error:
            self.pacer.finished(chat_id)
            status = Status.FAILED
            await outbox.record(session, notices, status, error.message)
            logger.error("notices %s failed: %s", ids, error.message)
        except BaseException:
            # Cancelled mid-request: whether it arrived is unknown; the claim stays.
            self.pacer.finished(chat_id)
            raise
        else:
            self.pacer.finished(chat_id)
            status = Status.SENT
            await outbox.record(session, notices, status, sent_at=self.clock())
            tally.messages += 1
            logger.debug("sent notices %s to person %s", ids, person.id)
        tally.add(status, len(notices))
        return Attempt.DONE


def _parcels(rows: list[tuple[Notice, Person]]) -> list[Parcel]:
    """Notices grouped by person and kind where the kind has a digest, in order of age."""
    parcels: list[Parcel] = []
    together: dict[tuple[int, str], Parcel] = {}
    for notice, person in rows:
        kind = KINDS.get(notice.kind)
        if kind is None or kind.digest is None:
            parcels.append(Parcel(person, notice.kind, [notice]))
            continue
        key = (person.id, notice.kind)
        if key not in together:
            together[key] = Parcel(person, notice.kind)
            parcels.append(together[key])
        together[key].notices.append(notice)
    return parcels


def _forbidden_reason(message: str) -> str:
    if "blocked" in message:
        return outbox.BLOCKED
    if "deactivated" in message:
        return outbox.DEACTIVATED
    if "initiate" in message:
        return outbox.NEVER_STARTED
    return message
