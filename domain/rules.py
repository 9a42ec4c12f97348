"""Plans, roles and who may do what, as plain functions over plain facts."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Plan(StrEnum):
    """Portal plans, lowest first."""

    FREE = "free"
    BASIC = "basic"
    STANDARD = "standard"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"

    @property
    def commercial(self) -> bool:
        return self is not Plan.FREE


class Role(StrEnum):
    ADMIN = "admin"
    EMPLOYEE = "employee"


DEMO_LENGTH = timedelta(days=15)
GRACE_LENGTH = timedelta(days=15)
REMINDER_LEADS = (timedelta(days=7), timedelta(days=3), timedelta(days=1))

# A person's memberships: portal id -> role. Everything a person may do follows from this.
Roles = Mapping[int, Role]


class Refusal(StrEnum):
    """Why an action is refused; each has one message in the catalogue."""

    NOT_VISIBLE = "not_visible"
    NOT_ADMIN = "not_admin"
    NOT_ADMIN_OF_BOTH = "not_admin_of_both"
    NOT_HEAD_ADMIN = "not_head_admin"
    IS_SAME_PORTAL = "is_same_portal"
    HEAD_IS_BRANCH = "head_is_branch"
    HEAD_NOT_ENTERPRISE = "head_not_enterprise"
    PORTAL_IS_HEAD = "portal_is_head"
    ALREADY_IN_NETWORK = "already_in_network"
    FREE_WAS_IN_NETWORK = "free_was_in_network"
    NOT_A_BRANCH = "not_a_branch"
    HEAD_PLAN_LOCKED = "head_plan_locked"
    LAST_ADMIN = "last_admin"
    NOT_A_MEMBER = "not_a_member"


class MenuItem(StrEnum):
    """The branch menu, in the order it is shown."""

    GO = "go"
    COPY = "copy"
    INVITE = "invite"
    STAFF = "staff"
    STRUCTURE = "structure"
    SYNC = "sync"
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class PortalFacts:
    """What the rules need to know of a portal."""

    id: int
    plan: Plan
    is_head: bool = False
    head_id: int | None = None
    demo_until: datetime | None = None
    ever_in_network: bool = False
    incompatible_until: datetime | None = None
    # Its staff and structure follow its Bitrix24 through a linked webhook.
    is_linked: bool = False

    @property
    def is_branch(self) -> bool:
        return self.head_id is not None

    @property
    def network_head_id(self) -> int | None:
        """The head of the network this portal is in, if any."""
        return self.id if self.is_head else self.head_id


@dataclass(frozen=True, slots=True)
class ConnectPlan:
    """What connecting will do: the demo end, when a free portal gets a demo."""

    demo_until: datetime | None


def is_member(roles: Roles, portal_id: int) -> bool:
    return portal_id in roles


def is_admin(roles: Roles, portal_id: int) -> bool:
    return roles.get(portal_id) is Role.ADMIN


def is_head_admin_of(roles: Roles, portal: PortalFacts) -> bool:
    """Whether the person administers the head of the network the portal is in."""
    head_id = portal.network_head_id
    return head_id is not None and is_admin(roles, head_id)


def may_see_summary(roles: Roles, portal: PortalFacts) -> bool:
    """Name, address, plan and demo state: members, and the admins of a branch's head."""
    return is_member(roles, portal.id) or (portal.is_branch and is_head_admin_of(roles, portal))


def menu_items(roles: Roles, portal: PortalFacts) -> list[MenuItem]:
    """The branch menu items this person may use, in order; empty when none."""
    items: list[MenuItem] = []
    if is_member(roles, portal.id):
        items += [MenuItem.GO, MenuItem.COPY]
        if is_admin(roles, portal.id):
            items.append(MenuItem.INVITE)
        items += [MenuItem.STAFF, MenuItem.STRUCTURE]
        if portal.is_linked and is_admin(roles, portal.id):
            items.append(MenuItem.SYNC)
    if portal.is_branch and is_head_admin_of(roles, portal):
        items.append(MenuItem.DISCONNECT)
    return items


def may_invite(roles: Roles, portal_id: int) -> Refusal | None:
    if not is_member(roles, portal_id):
        return Refusal.NOT_VISIBLE
    if not is_admin(roles, portal_id):
        return Refusal.NOT_ADMIN
    return None


def may_read(roles: Roles, portal_id: int) -> Refusal | None:
    """Staff list and structure: members only."""
    return None if is_member(roles, portal_id) else Refusal.NOT_VISIBLE


def check_connect(
    roles: Roles, head: PortalFacts, portal: PortalFacts, now: datetime
) -> ConnectPlan | Refusal:
    """Whether this person may connect `portal` to `head`'s network, and what it would do."""
    if not may_see_summary(roles, portal) or not is_member(roles, head.id):
        return Refusal.NOT_VISIBLE
    if portal.id == head.id:
        return Refusal.IS_SAME_PORTAL
    if not (is_admin(roles, head.id) and is_admin(roles, portal.id)):
        return Refusal.NOT_ADMIN_OF_BOTH
    if head.is_branch:
        return Refusal.HEAD_IS_BRANCH
    if head.plan is not Plan.ENTERPRISE:
        return Refusal.HEAD_NOT_ENTERPRISE
    if portal.is_head:
        return Refusal.PORTAL_IS_HEAD
    if portal.is_branch:
        return Refusal.ALREADY_IN_NETWORK
    if portal.plan is Plan.FREE and portal.ever_in_network:
        return Refusal.FREE_WAS_IN_NETWORK
    demo_until = now + DEMO_LENGTH if portal.plan is Plan.FREE else None
    return ConnectPlan(demo_until=demo_until)


def check_create_branch(roles: Roles, head: PortalFacts) -> Refusal | None:
    """Creating a new portal and connecting it at once: an admin of an enterprise head."""
    if not is_member(roles, head.id):
        return Refusal.NOT_VISIBLE
    if not is_admin(roles, head.id):
        return Refusal.NOT_ADMIN
    if head.is_branch:
        return Refusal.HEAD_IS_BRANCH
    if head.plan is not Plan.ENTERPRISE:
        return Refusal.HEAD_NOT_ENTERPRISE
    return None


def check_disconnect(roles: Roles, branch: PortalFacts) -> Refusal | None:
    """Any admin of the head may disconnect a branch; the branch's own admins may not."""
    if not may_see_summary(roles, branch):
        return Refusal.NOT_VISIBLE
    if not branch.is_branch:
        return Refusal.NOT_A_BRANCH
    if not is_head_admin_of(roles, branch):
        return Refusal.NOT_HEAD_ADMIN
    return None


def may_list_branches(roles: Roles, head: PortalFacts) -> Refusal | None:
    if not is_member(roles, head.id):
        return Refusal.NOT_VISIBLE
    if not head.is_head or not is_admin(roles, head.id):
        return Refusal.NOT_HEAD_ADMIN
    return None


def may_manage_staff(roles: Roles, portal_id: int) -> Refusal | None:
    return may_invite(roles, portal_id)


def check_role_change(
    admin_ids: Sequence[int], person_id: int, new_role: Role | None
) -> Refusal | None:
    """Changing a role or removing (new_role None) must leave the portal with an admin."""
    remaining = [admin for admin in admin_ids if admin != person_id]
    if person_id in admin_ids and new_role is not Role.ADMIN and not remaining:
        return Refusal.LAST_ADMIN
    return None


@dataclass(frozen=True, slots=True)
class PlanChange:
    """The effects of moving a portal to a plan."""

    plan: Plan
    stops_being_head: bool = False
    becomes_incompatible_until: datetime | None = None
    becomes_compatible: bool = False
    ends_demo: bool = False


def check_plan_change(
    portal: PortalFacts, new_plan: Plan, has_branches: bool, now: datetime
) -> PlanChange | Refusal:
    """Apply the plan rules of a head or a branch to a plan change recorded by billing."""
    if portal.is_head and has_branches and new_plan is not Plan.ENTERPRISE:
        return Refusal.HEAD_PLAN_LOCKED
    if portal.is_head and new_plan is not Plan.ENTERPRISE:
        return PlanChange(plan=new_plan, stops_being_head=True)
    if not portal.is_branch:
        return PlanChange(plan=new_plan)

    if new_plan.commercial:
        return PlanChange(
            plan=new_plan,
            becomes_compatible=portal.incompatible_until is not None,
            ends_demo=portal.demo_until is not None,
        )
    if portal.plan.commercial and portal.incompatible_until is None:
        return PlanChange(plan=new_plan, becomes_incompatible_until=now + GRACE_LENGTH)
    return PlanChange(plan=new_plan)


def current_portal(member_portal_ids: Sequence[int], current_id: int | None) -> int | None:
    """The portal that one-portal commands act on; None means the person must choose."""
    if current_id is not None and current_id in member_portal_ids:
        return current_id
    if len(member_portal_ids) == 1:
        return member_portal_ids[0]
    return None


def told_of_branch_event(
    branch_admin_ids: Sequence[int], head_admin_ids: Sequence[int], actor_id: int | None
) -> list[int]:
    """Who is told of a branch's event: each admin once, never the person who acted."""
    return sorted({*branch_admin_ids, *head_admin_ids} - {actor_id})


def demo_end_incompatible_until(portal: PortalFacts, now: datetime) -> datetime | None:
    """When a demo has ended on a still-free branch: the date it will be disconnected."""
    if not portal.is_branch or portal.plan is not Plan.FREE:
        return None
    if portal.demo_until is None or portal.demo_until > now:
        return None
    if portal.incompatible_until is not None:
        return None
    return portal.demo_until + GRACE_LENGTH


def grace_expired(portal: PortalFacts, now: datetime) -> bool:
    """An incompatible branch whose 15 days are over is disconnected."""
    return (
        portal.is_branch
        and portal.incompatible_until is not None
        and portal.incompatible_until <= now
    )
