"""`branchbot reminders`: what is due, what was sent, and who could not be reached."""

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.views import instant
from domain.addresses import display_address
from services import reminders
from services.clock import Clock, utc_now
from services.outbox import Status
from services.reminders import DEMO_REMINDER, Due, Ending, ReminderRow
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade

SECTIONS = (
    (Status.PENDING, "Owed, waiting to be sent"),
    (Status.SENDING, "Being sent"),
    (Status.SENT, "Sent"),
    (Status.UNREACHABLE, "Could not be reached"),
    (Status.OBSOLETE, "Not sent: the reason was gone"),
    (Status.UNCERTAIN, "Not sent again: the bot stopped while sending"),
    (Status.FAILED, "Failed"),
)


async def print_reminders(settings: Settings, limit: int, clock: Clock = utc_now) -> int:
    """Print the reminders report, the latest `limit` lines of each part."""
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            now = clock()
            report = await reminders.report(session, now, limit=limit)
    finally:
        await engine.dispose()

    for line in report_lines(report, now, settings.zone, limit):
        print(line)
    return 0


def report_lines(report: reminders.Report, now: datetime, zone: ZoneInfo, limit: int) -> list[str]:
    lines = [f"Reminders as of {instant(now, zone)}"]
    due = report.not_owed
    lines += ["", f"Due, not owed yet (the running bot sends them on its next run): {len(due)}"]
    lines += [
        f"  {_event(row.due.ending, row.due.branch_address, row.due.ends_at, zone)}  "
        f"{_lead(row.due)}  to {row.recipients} people"
        for row in due[:limit]
    ]
    if len(due) > limit:
        lines.append(f"  ... and {len(due) - limit} more")
    for status, title in SECTIONS:
        count = report.counts.get(status.value, 0)
        if count == 0 and status not in (Status.PENDING, Status.SENT, Status.UNREACHABLE):
            continue
        rows = report.rows.get(status.value, [])
        lines += ["", f"{title}: {count}"]
        lines += [f"  {_row(row, zone)}" for row in rows]
        if count > len(rows):
            lines.append(f"  ... and {count - len(rows)} more")
    return lines


def _row(row: ReminderRow, zone: ZoneInfo) -> str:
    who = f"{row.person_name} ({row.telegram_id or 'no Telegram account'})"
    ending = Ending.DEMO if row.kind == DEMO_REMINDER else Ending.GRACE
    event = _event(ending, row.branch_address, row.ends_at, zone)
    lead = f"{row.lead_days}-day" if row.lead_days is not None else "?"
    reason = f"  {row.reason}" if row.reason and row.status != Status.SENT.value else ""
    return f"{instant(row.at, zone)}  {who}  {event}  {lead}{reason}"


def _event(ending: Ending, address: str, ends_at: datetime | None, zone: ZoneInfo) -> str:
    moment = instant(ends_at, zone) if ends_at is not None else "?"
    what = "demo ends" if ending is Ending.DEMO else "disconnected"
    return f"{display_address(address)}: {what} {moment}"


def _lead(due: Due) -> str:
    return f"{due.lead_days}-day reminder"
