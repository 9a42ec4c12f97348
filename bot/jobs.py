"""The scheduled work on the network's timed state changes and reminders."""

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import Courier
from services import network, reminders
from services.clock import Clock
from storage.connectivity import describe_error, is_outage
from storage.turns import TIMED_CHANGES, take_turn

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimedRun:
    """What one run changed and owed."""

    demos_ended: int
    disconnected: int
    reminders_owed: int


class TimedChanges:
    """Ends demos, disconnects branches whose grace ran out, owes the reminders that have come.

    Each run is one transaction and works from the database alone, so it can run at start-up
    to catch up, and again any time, without doing anything twice. The courier then sends
    what was owed. Instances sharing a database take turns: while one runs, the others skip.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Clock,
        courier: Courier | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.courier = courier

    async def run(self) -> TimedRun:
        now = self.clock()
        async with self.session_factory() as session:
            if not await take_turn(session, TIMED_CHANGES):
                # Another instance is making these very changes now; its run covers this one.
                logger.debug("timed changes are being made by another instance")
                return TimedRun(0, 0, 0)
            ended = await network.expire_demos(session, now)
            disconnected = await network.expire_grace(session, now)
            planned = await reminders.owe_due(session, now)
            await session.commit()
        outcome = TimedRun(len(ended), len(disconnected), planned.owed)
        if ended or disconnected or planned.owed:
            logger.info(
                "timed changes: %s demos ended, %s branches disconnected, %s reminders owed",
                outcome.demos_ended,
                outcome.disconnected,
                outcome.reminders_owed,
            )
        if self.courier is not None:
            self.courier.kick()
        return outcome

    async def tick(self) -> None:
        """The scheduled run: a failure is logged, and the next run tries again."""
        try:
            await self.run()
        except Exception as error:
            if is_outage(error):
                logger.warning(
                    "timed changes wait for the database (%s); the next run tries again",
                    describe_error(error),
                )
                return
            logger.exception("timed changes failed; they are tried again on the next run")
