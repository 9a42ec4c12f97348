"""The outbox: messages owed to people, written in the same transaction as their cause."""

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Notice


async def owe(
    session: AsyncSession,
    *,
    person_id: int,
    kind: str,
    dedupe_key: str,
    now: datetime,
    not_before: datetime | None = None,
    **params: Any,
) -> bool:
    """Owe a person a message once; False when the same event is already owed or sent."""
    existing = await session.execute(select(Notice.id).where(Notice.dedupe_key == dedupe_key))
    if existing.first() is not None:
        return False
    session.add(
        Notice(
            person_id=person_id,
            kind=kind,
            params=json.dumps(params, ensure_ascii=False, sort_keys=True, default=str),
            dedupe_key=dedupe_key,
            status="pending",
            attempts=0,
            created_at=now,
            not_before=not_before or now,
        )
    )
    return True


def params_of(notice: Notice) -> dict[str, Any]:
    loaded = json.loads(notice.params)
    return loaded if isinstance(loaded, dict) else {}
