"""The audit log: who did what, when, and how it ended."""

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Person, Portal


def actor_label(person: Person | None) -> str:
    """How the log names whoever acted."""
    if person is None:
        return "system"
    suffix = f" (tg {person.telegram_id})" if person.telegram_id is not None else ""
    return f"{person.name}{suffix}"


def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor: Person | None,
    action: str,
    portal: Portal | None,
    outcome: str = "ok",
    actor_text: str | None = None,
    **details: Any,
) -> AuditEntry:
    """Add one entry to the session; it is written with the rest of the transaction."""
    entry = AuditEntry(
        at=at,
        actor_person_id=actor.id if actor is not None else None,
        actor=actor_text or actor_label(actor),
        action=action,
        portal_id=portal.id if portal is not None else None,
        portal_address=portal.address if portal is not None else None,
        network_head_id=_network_head_id(portal),
        details=json.dumps(details, ensure_ascii=False, sort_keys=True, default=str),
        outcome=outcome,
    )
    session.add(entry)
    return entry


def _network_head_id(portal: Portal | None) -> int | None:
    if portal is None:
        return None
    if portal.is_head:
        return portal.id
    return portal.head_id
