"""Invite links: made by a portal's admins, used once, for a limited time."""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.rules import Role
from services import audit, notices
from storage.models import Department, Invite, Membership, Person, Portal

# Telegram's start payload allows at most 64 characters of A-Za-z0-9_-.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_BYTES = 24  # 32 URL-safe characters, 192 bits: not guessable


class Redeemed(StrEnum):
    JOINED = "joined"
    LINKED = "linked"
    ALREADY_MEMBER = "already_member"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TelegramIdentity:
    """Who opened the link, as Telegram tells us."""

    telegram_id: int
    name: str
    username: str | None
    language_code: str | None


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: Redeemed
    portal: Portal | None = None
    person: Person | None = None


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


async def create_invite(
    session: AsyncSession,
    *,
    portal: Portal,
    creator: Person,
    role: Role,
    department_id: int | None,
    now: datetime,
    ttl: timedelta,
    person_id: int | None = None,
) -> Invite:
    invite = Invite(
        token=new_token(),
        portal_id=portal.id,
        created_by_id=creator.id,
        role=role.value,
        department_id=department_id,
        person_id=person_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invite)
    await session.flush()
    audit.record(
        session,
        at=now,
        actor=creator,
        action="invite",
        portal=portal,
        invite_id=invite.id,
        role=role.value,
        department_id=department_id,
        expires_at=invite.expires_at.isoformat(),
    )
    return invite


async def open_invites(session: AsyncSession, portal_id: int, now: datetime) -> list[Invite]:
    """Invites of a portal that can still be used, newest first."""
    result = await session.execute(
        select(Invite)
        .where(
            Invite.portal_id == portal_id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .order_by(Invite.created_at.desc(), Invite.id.desc())
    )
    return list(result.scalars())


async def departments_of(session: AsyncSession, portal_id: int) -> list[Department]:
    result = await session.execute(
        select(Department).where(Department.portal_id == portal_id).order_by(Department.name)
    )
    return list(result.scalars())


async def revoke_invite(
    session: AsyncSession, *, invite_id: int, portal: Portal, actor: Person, now: datetime
) -> bool:
    """Revoke an open invite of this portal; False when it was no longer open."""
    result = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.portal_id == portal.id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    revoked = bool(getattr(result, "rowcount", 0))
    audit.record(
        session,
        at=now,
        actor=actor,
        action="revoke",
        portal=portal,
        outcome="ok" if revoked else "refused",
        invite_id=invite_id,
    )
    return revoked


async def redeem(
    session: AsyncSession,
    token: str,
    *,
    who: TelegramIdentity,
    person: Person | None,
    now: datetime,
) -> Redemption:
    """Open an invite link: join or link, or say why not. Grants nothing on refusal."""
    if not TOKEN_PATTERN.match(token):
        return Redemption(Redeemed.UNKNOWN)
    invite = (
        await session.execute(select(Invite).where(Invite.token == token))
    ).scalar_one_or_none()
    if invite is None:
        return Redemption(Redeemed.UNKNOWN)
    portal = await session.get(Portal, invite.portal_id)
    if portal is None:
        return Redemption(Redeemed.UNKNOWN)

    if person is not None and await _is_member(session, person.id, portal.id):
        # Opening an invite to a portal one is already in changes nothing and keeps it usable.
        return Redemption(Redeemed.ALREADY_MEMBER, portal, person)
    refusal = _refusal(invite, now)
    if refusal is not None:
        return Redemption(refusal, portal if refusal is Redeemed.USED else None)

    target = await session.get(Person, invite.person_id) if invite.person_id else None
    if target is not None and target.telegram_id not in (None, who.telegram_id):
        return Redemption(Redeemed.USED)

    # Claim it in one statement so two people opening the same link cannot both get in.
    claimed = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite.id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now)
    )
    if not getattr(claimed, "rowcount", 0):
        return Redemption(Redeemed.USED)

    if target is not None:
        person = await _link(session, target, person, who, now)
        outcome = Redeemed.LINKED
    else:
        person = person or _new_person(session, who, now)
        await session.flush()
        membership = Membership(
            person_id=person.id, portal_id=portal.id, role=invite.role, position=None
        )
        session.add(membership)
        await session.flush()
        if invite.department_id is not None:
            await session.refresh(membership, attribute_names=["departments"])
            department = await session.get(Department, invite.department_id)
            if department is not None and department.portal_id == portal.id:
                membership.departments.append(department)
        outcome = Redeemed.JOINED

    await session.execute(
        update(Invite).where(Invite.id == invite.id).values(used_by_id=person.id)
    )
    person.current_portal_id = portal.id
    audit.record(
        session,
        at=now,
        actor=person,
        action="join",
        portal=portal,
        invite_id=invite.id,
        how=outcome.value,
    )
    if invite.created_by_id is not None and invite.created_by_id != person.id:
        await notices.owe(
            session,
            person_id=invite.created_by_id,
            kind="invite_joined",
            dedupe_key=f"invite-joined:{invite.id}",
            now=now,
            portal_id=portal.id,
            portal_name=portal.name,
            person_name=person.name,
        )
    return Redemption(outcome, portal, person)


def _refusal(invite: Invite, now: datetime) -> Redeemed | None:
    if invite.revoked_at is not None:
        return Redeemed.REVOKED
    if invite.used_at is not None:
        return Redeemed.USED
    if invite.expires_at <= now:
        return Redeemed.EXPIRED
    return None


async def _is_member(session: AsyncSession, person_id: int, portal_id: int) -> bool:
    result = await session.execute(
        select(Membership.id).where(
            Membership.person_id == person_id, Membership.portal_id == portal_id
        )
    )
    return result.first() is not None


def _new_person(session: AsyncSession, who: TelegramIdentity, now: datetime) -> Person:
    person = Person(
        telegram_id=who.telegram_id,
        name=who.name,
        name_folded=who.name.casefold(),
        username=who.username,
        telegram_language=who.language_code,
        started_at=now,
        created_at=now,
    )
    session.add(person)
    return person


async def _link(
    session: AsyncSession,
    target: Person,
    person: Person | None,
    who: TelegramIdentity,
    now: datetime,
) -> Person:
    """Give the staff record `target` this Telegram account, merging an existing record."""
    if person is None or person.id == target.id:
        target.telegram_id = who.telegram_id
        target.username = who.username or target.username
        target.telegram_language = who.language_code
        target.started_at = target.started_at or now
        return target

    # The account already belongs to a person on other portals: that person takes over the
    # target's memberships and department headships, and the target record goes away.
    taken = set(
        (
            await session.execute(
                select(Membership.portal_id).where(Membership.person_id == person.id)
            )
        ).scalars()
    )
    await session.execute(
        update(Membership)
        .where(Membership.person_id == target.id, Membership.portal_id.not_in(taken))
        .values(person_id=person.id)
    )
    await session.execute(
        update(Department)
        .where(Department.head_person_id == target.id)
        .values(head_person_id=person.id)
    )
    await session.execute(
        update(Invite).where(Invite.person_id == target.id).values(person_id=person.id)
    )
    email, phone = target.email, target.phone
    await session.delete(target)
    await session.flush()
    if person.email is None and email is not None:
        person.email = email
    if person.phone is None and phone is not None:
        person.phone = phone
    return person
