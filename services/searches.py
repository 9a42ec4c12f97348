"""Staff searches kept on the server, so that paging any query fits in callback data."""

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import StaffQuery

SEARCH_LIFETIME = timedelta(days=7)
MAX_SEARCH_LENGTH = 1000


async def remember_search(
    session: AsyncSession, person_id: int, portal_id: int, text: str, now: datetime
) -> int:
    """Store the search and return its id; a person's searches older than a week are dropped."""
    await session.execute(
        delete(StaffQuery).where(
            StaffQuery.person_id == person_id, StaffQuery.created_at < now - SEARCH_LIFETIME
        )
    )
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
