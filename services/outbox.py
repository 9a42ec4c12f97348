"""What became of each notice the outbox owes, and the queries the courier needs for it.

A notice goes `pending` -> `sending` -> `sent`, or ends `unreachable`, `failed` or `obsolete`.
The claim (`sending`) is committed before the message leaves, so a crash leaves the notices that
were in flight marked; the next start calls them `uncertain` and does not send them again.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Notice, Person

log = logging.getLogger(__name__)

# A message that failed for want of a network is tried again later, this many times in all.
MAX_ATTEMPTS = 8


class Status(StrEnum):
    PENDING = "pending"
    # Claimed: the request may be on its way to Telegram.
    SENDING = "sending"
    SENT = "sent"
    # Never started the bot, blocked it, deleted their account.
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    # Its reason was gone when its turn came (the branch upgraded, say).
    OBSOLETE = "obsolete"
    # The bot stopped while sending it: it may or may not have arrived, and is not sent again.
    UNCERTAIN = "uncertain"


# Why someone could not be reached, as the command line shows it.
NOT_LINKED = "has no Telegram account linked"
NEVER_STARTED = "never started the bot"
BLOCKED = "blocked the bot"
DEACTIVATED = "deleted their Telegram account"
INTERRUPTED = "the bot stopped while sending it; not sent again so that it is never sent twice"


async def mark_interrupted(session: AsyncSession) -> int:
    """Notices claimed by a process that died: returns how many were marked uncertain.

    With several instances this also marks the few notices another instance is sending at
    that moment; that instance then records what really became of them, over the mark.
    """
    result = await session.execute(
        update(Notice)
        .where(Notice.status == Status.SENDING.value)
        .values(status=Status.UNCERTAIN.value, last_error=INTERRUPTED)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def due_notices(
    session: AsyncSession, now: datetime, people: int
) -> list[tuple[Notice, Person]]:
    """Every due notice of the first `people` people who have some, oldest first.

    Taking whole people keeps all of one person's due notices in one batch, so they can go
    out together.
    """
    due = (Notice.status == Status.PENDING.value, Notice.not_before <= now)
    first_people = (
        select(Notice.person_id)
        .where(*due)
        .group_by(Notice.person_id)
        .order_by(func.min(Notice.id))
        .limit(people)
    )
    result = await session.execute(
        select(Notice, Person)
        .join(Person, Person.id == Notice.person_id)
        .where(*due, Notice.person_id.in_(first_people))
        .order_by(Notice.id)
        .execution_options(populate_existing=True)
    )
    return [(notice, person) for notice, person in result.all()]


async def claim(session: AsyncSession, notices: Sequence[Notice]) -> bool:
    """Mark the notices as being sent, with one more attempt: all of them, or none.

    False when another instance has claimed any of them, or is claiming them right now; then
    nothing is changed. Several instances can deliver the same outbox: each notice is claimed,
    and so sent, by one of them only. The caller commits, at once, in either case.
    """
    ids = sorted(notice.id for notice in notices)
    pending = Notice.status == Status.PENDING.value
    if session.get_bind().dialect.name == "postgresql":
        # The lowest id is the message's key: the instance that locks it sends the message, and
        # another one skips it at once instead of waiting. The rest are locked in id order too,
        # so two instances never wait for each other in a circle.
        key = await session.scalar(
            select(Notice.id).where(Notice.id == ids[0], pending).with_for_update(skip_locked=True)
        )
        if key is None:
            return False
        if len(ids) > 1:
            others = await session.scalars(
                select(Notice.id)
                .where(Notice.id.in_(ids[1:]), pending)
                .order_by(Notice.id)
                .with_for_update()
            )
            if len(others.all()) != len(ids) - 1:
                return False
    # On SQLite the UPDATE itself is the claim: one writer at a time, and it changes the rows
    # only when every one of them is still pending.
    still_pending = (
        select(func.count()).select_from(Notice).where(Notice.id.in_(ids), pending)
    ).scalar_subquery()
    result = await session.execute(
        update(Notice)
        .where(Notice.id.in_(ids), pending, still_pending == len(ids))
        .values(status=Status.SENDING.value, attempts=Notice.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != len(ids):
        return False
    for notice in notices:
        set_committed_value(notice, "status", Status.SENDING.value)
        set_committed_value(notice, "attempts", notice.attempts + 1)
    return True


async def still_pending(session: AsyncSession, notices: Sequence[Notice]) -> list[Notice]:
    """Those of the notices that nobody has claimed or settled since they were read."""
    ids = set(
        await session.scalars(
            select(Notice.id).where(
                Notice.id.in_([notice.id for notice in notices]),
                Notice.status == Status.PENDING.value,
            )
        )
    )
    return [notice for notice in notices if notice.id in ids]


async def record(
    session: AsyncSession,
    notices: Sequence[Notice],
    status: Status,
    reason: str | None = None,
    *,
    sent_at: datetime | None = None,
    unless_taken: bool = False,
) -> None:
    """What became of the notices, in one statement.

    With `unless_taken`, for notices not claimed by this instance: a notice that another
    instance claimed or settled in the meantime keeps what that instance wrote.
    """
    values: dict[str, Any] = {"status": status.value, "last_error": reason}
    if sent_at is not None:
        values["sent_at"] = sent_at
    await _write(session, notices, only_pending=unless_taken, **values)


async def retry_later(
    session: AsyncSession, notices: Sequence[Notice], now: datetime, reason: str
) -> bool:
    """Try again after a growing pause; False when the notices have had all their attempts."""
    gave_up = [notice for notice in notices if notice.attempts >= MAX_ATTEMPTS]
    if gave_up:
        await record(session, gave_up, Status.FAILED, reason)
        log.error("notices %s failed %s times: %s", [n.id for n in gave_up], MAX_ATTEMPTS, reason)
    for notice in notices:
        if notice not in gave_up:
            pause = timedelta(seconds=min(3600, 5 * 2**notice.attempts))
            await _write(
                session,
                [notice],
                status=Status.PENDING.value,
                last_error=reason,
                not_before=now + pause,
            )
            log.warning("notice %s will be tried again in %s: %s", notice.id, pause, reason)
    return not gave_up


async def _write(
    session: AsyncSession, notices: Sequence[Notice], *, only_pending: bool = False, **values: Any
) -> None:
    """An UPDATE of these rows, with the loaded objects kept in step (plain values only)."""
    statement = update(Notice).where(Notice.id.in_([notice.id for notice in notices]))
    if only_pending:
        statement = statement.where(Notice.status == Status.PENDING.value)
    await session.execute(statement.values(**values).execution_options(synchronize_session=False))
    for notice in notices:
        for name, value in values.items():
            if name != "attempts":
                set_committed_value(notice, name, value)
