"""Phone numbers: one normal form for every number we store or compare, and finding staff by one.

Every number is kept in E.164 (`+79123456789`), whatever way it was written: `8 (912) 345-67-89`
and `+7 912 345 67 89` are the same number. A number without a country code is read as Russian.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import phonenumbers
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from storage.models import (
    Department,
    Invite,
    Membership,
    MembershipPhone,
    Person,
    Portal,
    PortalLink,
)

PHONE_LINK_ACTION: Final = "phone_link"

DEFAULT_REGION: Final = "RU"
# Longer than any real number with its punctuation; keeps the parser off pathological input.
MAX_PHONE_TEXT: Final = 40


def normalise_phone(text: str, *, international: bool = False) -> str | None:
    """The number in E.164, or None when it cannot be a phone number.

    `international` says the text always carries its country code, even without a leading +:
    Telegram gives a shared contact's number that way (`79123456789`, `447911123456`).
    """
    text = text.strip()
    if not text or len(text) > MAX_PHONE_TEXT:
        return None
    if international and not text.startswith("+"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    # Possible rather than valid: a number range opened after the library's release is still a
    # number, and test portals use made-up numbers.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phones(texts: Iterable[str | None]) -> list[str]:
    """The distinct numbers among `texts` in E.164, in their first order; junk is skipped."""
    seen: dict[str, None] = {}
    for text in texts:
        if text:
            phone = normalise_phone(text)
            if phone is not None:
                seen.setdefault(phone, None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class StaffMatch:
    """A membership on a linked portal whose person has the number."""

    membership_id: int
    person_id: int
    portal_id: int
    portal_name: str
    person_telegram_id: int | None


async def staff_with_phone(session: AsyncSession, phone: str) -> list[StaffMatch]:
    """Everyone on the staff of a linked portal with this number (E.164), by portal name.

    The number may come from the portal's Bitrix24 (synced phones) or from the network file
    (the person's own phone); both are kept in the same normal form.
    """
    synced = select(MembershipPhone.membership_id).where(MembershipPhone.phone == phone)
    result = await session.execute(
        select(Membership.id, Person.id, Portal.id, Portal.name, Person.telegram_id)
        .select_from(Membership)
        .join(Person, Person.id == Membership.person_id)
        .join(Portal, Portal.id == Membership.portal_id)
        .join(PortalLink, PortalLink.portal_id == Portal.id)
        .where(or_(Membership.id.in_(synced), Person.phone == phone))
        .order_by(Portal.name, Portal.id, Membership.id)
    )
    return [StaffMatch(*row) for row in result.all()]


def masked_phone(phone: str) -> str:
    """A number as it may be shown back: its country code and last two digits."""
    if len(phone) <= 6:
        return phone
    return phone[:2] + "*" * (len(phone) - 4) + phone[-2:]


@dataclass(frozen=True, slots=True)
class Caller:
    """The Telegram account that shared its own contact."""

    telegram_id: int
    name: str
    username: str | None
    language_code: str | None


@dataclass(slots=True)
class PhoneLink:
    """What sharing a number did: the person it is now, and the portals it reached."""

    person: Person | None
    linked: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


async def link_by_phone(
    session: AsyncSession,
    caller: Caller,
    person: Person | None,
    phone: str,
    *,
    now: datetime,
) -> PhoneLink:
    """Link the caller to every linked portal's staff record with this number (E.164).

    A staff record already linked to another Telegram account is left alone. The caller's own
    record takes over each matching one: its membership (and Bitrix24 id, so the next sync
    still knows it), headships and invites; a record left with nothing is removed.
    """
    outcome = PhoneLink(person=person)
    for match in await staff_with_phone(session, phone):
        if person is not None and match.person_id == person.id:
            outcome.already.append(match.portal_name)
            continue
        if match.person_telegram_id is not None:
            continue
        target = await session.get(Person, match.person_id)
        if target is None or target.telegram_id is not None:
            continue
        if person is None:
            person = _claim(target, caller, now)
        else:
            await _take_over(session, person, target, match.portal_id)
        person.current_portal_id = person.current_portal_id or match.portal_id
        portal = await session.get(Portal, match.portal_id)
        audit.record(session, at=now, actor=person, action=PHONE_LINK_ACTION, portal=portal)
        outcome.linked.append(match.portal_name)
    outcome.person = person
    await session.flush()
    return outcome


def _claim(target: Person, caller: Caller, now: datetime) -> Person:
    target.telegram_id = caller.telegram_id
    target.username = caller.username or target.username
    target.telegram_language = caller.language_code
    target.started_at = target.started_at or now
    return target


async def _take_over(
    session: AsyncSession, person: Person, target: Person, portal_id: int
) -> None:
    """Move the target's membership on one portal to the person."""
    theirs = await session.scalar(
        select(Membership).where(
            Membership.person_id == target.id, Membership.portal_id == portal_id
        )
    )
    if theirs is None:
        return
    mine = await session.scalar(
        select(Membership).where(
            Membership.person_id == person.id, Membership.portal_id == portal_id
        )
    )
    if mine is None:
        theirs.person_id = person.id
    else:
        # On the staff already (by an invite): that membership becomes the synced one.
        external_id = theirs.external_id
        await session.execute(
            update(MembershipPhone)
            .where(MembershipPhone.membership_id == theirs.id)
            .values(membership_id=mine.id)
        )
        await session.delete(theirs)
        await session.flush()
        mine.external_id = mine.external_id or external_id
    await session.execute(
        update(Department)
        .where(Department.portal_id == portal_id, Department.head_person_id == target.id)
        .values(head_person_id=person.id)
    )
    await session.execute(
        update(Invite)
        .where(Invite.portal_id == portal_id, Invite.person_id == target.id)
        .values(person_id=person.id)
    )
    await session.flush()
    left = await session.scalar(select(Membership.id).where(Membership.person_id == target.id))
    if left is None:
        email, phone = target.email, target.phone
        await session.execute(delete(Person).where(Person.id == target.id))
        session.expunge(target)
        if person.email is None and email is not None:
            person.email = email
        if person.phone is None and phone is not None:
            person.phone = phone
