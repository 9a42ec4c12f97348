"""Re-checking, on every command and tap, what the person may see and do."""

from dataclasses import dataclass

from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from domain.rules import MenuItem, Plan, Refusal, Role, current_portal, menu_items
from services.people import MyPortal, my_portals, roles_of
from storage.models import Person


@dataclass(frozen=True, slots=True)
class PortalAccess:
    """A portal the person is a member of, with what they may do there."""

    portal: MyPortal
    items: list[MenuItem]
    portals: list[MyPortal]

    @property
    def head_name(self) -> str | None:
        """The head's name, only when the person is on the head's staff too."""
        for other in self.portals:
            if other.id == self.portal.head_id:
                return other.name
        return None


async def member_access(
    session: AsyncSession, person: Person | None, portal_id: int
) -> PortalAccess | None:
    """The person's access to a portal they belong to; None for anything else, whatever it is."""
    if person is None:
        return None
    return access_among(await my_portals(session, person.id), portal_id)


def access_among(portals: list[MyPortal], portal_id: int) -> PortalAccess | None:
    for portal in portals:
        if portal.id == portal_id:
            return PortalAccess(portal, menu_items(roles_of(portals), portal.facts), portals)
    return None


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
