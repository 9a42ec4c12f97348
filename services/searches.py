"""Staff searches kept on the server, so that paging a query too long for callback data works.

Searches short enough travel in the page buttons themselves (bot/keyboards/callbacks.py).
"""

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import StaffQuery

SEARCH_LIFETIME = timedelta(days=7)
MAX_SEARCH_LENGTH = 1000


async def remember_search(
    session: AsyncSession, person_id: int, portal_id: int, text: str, now: datetime
) -> int:
    """Store the search and return its id; it is forgotten a week later (`forget_old_searches`)."""
    query = StaffQuery(
        person_id=person_id, portal_id=portal_id, text=text[:MAX_SEARCH_LENGTH], created_at=now
    )
    session.add(query)
    await session.flush()
    return query.id


async def recall_search(
    session: AsyncSession, query_id: int, person_id: int, portal_id: int
) -> str | None:
    """The text of a stored search, only for the person and portal it was made for."""
    result = await session.execute(
        select(StaffQuery.text).where(
            StaffQuery.id == query_id,
            StaffQuery.person_id == person_id,
            StaffQuery.portal_id == portal_id,
        )
    )
    return result.scalar_one_or_none()


async def forget_old_searches(session: AsyncSession, now: datetime) -> int:
    """Drop the searches older than SEARCH_LIFETIME; returns how many were dropped."""
    result = await session.execute(
        delete(StaffQuery).where(StaffQuery.created_at < now - SEARCH_LIFETIME)
    )
    return int(getattr(result, "rowcount", 0) or 0)
