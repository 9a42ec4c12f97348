"""Re-checking, on every command and tap, what the person may see and do."""

from dataclasses import dataclass, replace

from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from domain.rules import MenuItem, Plan, Refusal, Role, current_portal, menu_items
from services.people import (
    MyPortal,
    PortalsAtHand,
    portals_at_hand,
    position_in_list,
    roles_of,
)
from storage.models import Person


@dataclass(frozen=True, slots=True)
class PortalAccess:
    """A portal the person is a member of, with what they may do there.

    `portals` holds at least the portal and its network's head (when the person is on the
    head's staff too).
    """

    portal: MyPortal
    items: list[MenuItem]
    portals: list[MyPortal]
    # The portal's place in the person's portal list, for the way back to its page: None
    # when not asked for, or when `portals` are all the person's (as `access_among` gets).
    position: int | None = None

    @property
    def head_name(self) -> str | None:
        """The head's name, only when the person is on the head's staff too."""
        for other in self.portals:
            if other.id == self.portal.head_id:
                return other.name
        return None


async def member_access(
    session: AsyncSession, person: Person | None, portal_id: int, *, with_position: bool = False
) -> PortalAccess | None:
    """The person's access to a portal they belong to; None for anything else, whatever it is.

    `with_position` makes sure the portal's place in the person's list is known.
    """
    if person is None:
        return None
    at_hand = await portals_at_hand(session, person.id, portal_id, with_position=with_position)
    return access_at_hand(at_hand, portal_id)


def access_among(portals: list[MyPortal], portal_id: int) -> PortalAccess | None:
    for portal in portals:
        if portal.id == portal_id:
            return PortalAccess(portal, menu_items(roles_of(portals), portal.facts), portals)
    return None


def access_at_hand(at_hand: PortalsAtHand, portal_id: int) -> PortalAccess | None:
    """Access from the portals an update has loaded: the portal's head is among them."""
    access = access_among(list(at_hand.portals), portal_id)
    if access is None:
        return None
    return replace(access, position=position_in_list(at_hand, portal_id))


async def current_access(session: AsyncSession, person: Person | None) -> PortalAccess | None:
    """Access to the current portal when the update's own statement settles it, else None.

    None leaves the asking (and the answer to a stranger) to `current_or_ask`, which reads the
    whole list; a known current portal, or a person's only one, needs no more statements.
    """
    if person is None:
        return None
    at_hand = await portals_at_hand(session, person.id, person.current_portal_id)
    if at_hand.get(person.current_portal_id) is None and at_hand.total != 1:
        return None
    current = resolve_current(person, list(at_hand.portals))
    return access_at_hand(at_hand, current.id) if current is not None else None


def resolve_current(person: Person, portals: list[MyPortal]) -> MyPortal | None:
    """The portal one-portal commands act on, keeping the stored choice in step."""
    chosen = current_portal([portal.id for portal in portals], person.current_portal_id)
    if chosen != person.current_portal_id:
        person.current_portal_id = chosen
    return next((portal for portal in portals if portal.id == chosen), None)


def refusal_text(refusal: Refusal) -> str:
    texts = {
        Refusal.NOT_VISIBLE: _("No portal of yours has that address."),
        Refusal.NOT_ADMIN: _("Only the portal's administrators can do that."),
        Refusal.NOT_ADMIN_OF_BOTH: _(
            "You must be an administrator of both the head portal and the portal to connect."
        ),
        Refusal.NOT_HEAD_ADMIN: _("Only the head portal's administrators can do that."),
        Refusal.IS_SAME_PORTAL: _("The head portal cannot be connected to itself."),
        Refusal.HEAD_IS_BRANCH: _("That portal is a branch and cannot be a head."),
        Refusal.HEAD_NOT_ENTERPRISE: _(
            "Only a portal on the Enterprise plan can be the head of a network."
        ),
        Refusal.PORTAL_IS_HEAD: _("That portal is the head of a network itself."),
        Refusal.ALREADY_IN_NETWORK: _(
            "That portal is already in a network: it must be disconnected first."
        ),
        Refusal.FREE_WAS_IN_NETWORK: _(
            "That portal was in a network before and is on the Free plan: it must move to a "
            "commercial plan before it can be connected again."
        ),
        Refusal.NOT_A_BRANCH: _("That portal is not a branch of a network."),
        Refusal.HEAD_PLAN_LOCKED: _(
            "The head of a network with branches must stay on the Enterprise plan."
        ),
        Refusal.LAST_ADMIN: _("A portal must keep at least one administrator."),
        Refusal.NOT_A_MEMBER: _("That person is not on this portal's staff."),
    }
    return texts[refusal]


def is_admin_somewhere(portals: list[MyPortal]) -> bool:
    return any(portal.role is Role.ADMIN for portal in portals)


def heads_administered(portals: list[MyPortal]) -> list[MyPortal]:
    return [
        portal
        for portal in portals
        if portal.role is Role.ADMIN and portal.is_head and portal.plan is Plan.ENTERPRISE
    ]
