"""The rules of the network as plain functions: the whole permission table and plan rules."""

from datetime import UTC, datetime, timedelta

import pytest

from domain.language import language_for
from domain.rules import (
    DEMO_LENGTH,
    GRACE_LENGTH,
    ConnectPlan,
    MenuItem,
    Plan,
    PortalFacts,
    Refusal,
    Role,
    check_connect,
    check_create_branch,
    check_disconnect,
    check_plan_change,
    check_role_change,
    current_portal,
    may_invite,
    may_list_branches,
    may_read,
    menu_items,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HEAD = PortalFacts(id=1, plan=Plan.ENTERPRISE, is_head=True)
BRANCH = PortalFacts(id=2, plan=Plan.STANDARD, head_id=1, ever_in_network=True)
LONER = PortalFacts(id=3, plan=Plan.STANDARD)

A, E = Role.ADMIN, Role.EMPLOYEE
ACTORS = {
    "stranger": {},
    "employee": {1: E, 2: E, 3: E},
    "branch admin": {2: A, 3: A},
    "head admin": {1: A},
    "admin of both": {1: A, 2: A, 3: A},
}
OK = None

# action -> expected outcome for each actor, in the order of ACTORS.
TABLE = {
    "open the branch's menu": [False, True, True, False, True],
    "read the branch's staff": [Refusal.NOT_VISIBLE, OK, OK, Refusal.NOT_VISIBLE, OK],
    "invite to the branch": [
        Refusal.NOT_VISIBLE,
        Refusal.NOT_ADMIN,
        OK,
        Refusal.NOT_VISIBLE,
        OK,
    ],
    "connect a portal": [
        Refusal.NOT_VISIBLE,
        Refusal.NOT_ADMIN_OF_BOTH,
        Refusal.NOT_VISIBLE,
        Refusal.NOT_VISIBLE,
        OK,
    ],
    "create a branch": [
        Refusal.NOT_VISIBLE,
        Refusal.NOT_ADMIN,
        Refusal.NOT_VISIBLE,
        OK,
        OK,
    ],
    "disconnect the branch": [
        Refusal.NOT_VISIBLE,
        Refusal.NOT_HEAD_ADMIN,
        Refusal.NOT_HEAD_ADMIN,
        OK,
        OK,
    ],
    "list the branches": [
        Refusal.NOT_VISIBLE,
        Refusal.NOT_HEAD_ADMIN,
        Refusal.NOT_VISIBLE,
        OK,
        OK,
    ],
}


def outcome(action: str, roles: dict[int, Role]) -> object:
    if action == "open the branch's menu":
        return MenuItem.GO in menu_items(roles, BRANCH)
    if action == "read the branch's staff":
        return may_read(roles, BRANCH.id)
    if action == "invite to the branch":
        return may_invite(roles, BRANCH.id)
    if action == "connect a portal":
        decision = check_connect(roles, HEAD, LONER, NOW)
        return None if isinstance(decision, ConnectPlan) else decision
    if action == "create a branch":
        return check_create_branch(roles, HEAD)
    if action == "disconnect the branch":
        return check_disconnect(roles, BRANCH)
    if action == "list the branches":
        return may_list_branches(roles, HEAD)
    raise AssertionError(action)


@pytest.mark.parametrize(
    ("action", "actor", "expected"),
    [
        (action, actor, expected)
        for action, row in TABLE.items()
        for actor, expected in zip(ACTORS, row, strict=True)
    ],
)
def test_permission_table(action: str, actor: str, expected: object) -> None:
    assert outcome(action, ACTORS[actor]) == expected


def test_menu_items_follow_the_order_and_the_rights() -> None:
    assert menu_items(ACTORS["employee"], BRANCH) == [
        MenuItem.GO,
        MenuItem.COPY,
        MenuItem.STAFF,
        MenuItem.STRUCTURE,
    ]
    assert menu_items(ACTORS["branch admin"], BRANCH) == [
        MenuItem.GO,
        MenuItem.COPY,
        MenuItem.INVITE,
        MenuItem.STAFF,
        MenuItem.STRUCTURE,
    ]
    assert menu_items(ACTORS["head admin"], BRANCH) == [MenuItem.DISCONNECT]
    assert menu_items(ACTORS["admin of both"], BRANCH)[-1] is MenuItem.DISCONNECT
    assert MenuItem.DISCONNECT not in menu_items(ACTORS["admin of both"], HEAD)
    assert menu_items(ACTORS["stranger"], BRANCH) == []


@pytest.mark.parametrize(
    ("head", "portal", "expected"),
    [
        (HEAD, HEAD, Refusal.IS_SAME_PORTAL),
        (PortalFacts(id=1, plan=Plan.PROFESSIONAL), LONER, Refusal.HEAD_NOT_ENTERPRISE),
        (PortalFacts(id=1, plan=Plan.ENTERPRISE, head_id=9), LONER, Refusal.HEAD_IS_BRANCH),
        (HEAD, PortalFacts(id=3, plan=Plan.ENTERPRISE, is_head=True), Refusal.PORTAL_IS_HEAD),
        (HEAD, PortalFacts(id=3, plan=Plan.BASIC, head_id=7), Refusal.ALREADY_IN_NETWORK),
        (
            HEAD,
            PortalFacts(id=3, plan=Plan.FREE, ever_in_network=True),
            Refusal.FREE_WAS_IN_NETWORK,
        ),
    ],
)
def test_connect_refusals(head: PortalFacts, portal: PortalFacts, expected: Refusal) -> None:
    roles = {1: A, 3: A}
    assert check_connect(roles, head, portal, NOW) == expected


def test_a_free_portal_gets_its_demo_once() -> None:
    roles = {1: A, 3: A}
    fresh = PortalFacts(id=3, plan=Plan.FREE)
    assert check_connect(roles, HEAD, fresh, NOW) == ConnectPlan(demo_until=NOW + DEMO_LENGTH)
    assert check_connect(roles, HEAD, LONER, NOW) == ConnectPlan(demo_until=None)
    enterprise = PortalFacts(id=3, plan=Plan.ENTERPRISE)
    assert check_connect(roles, HEAD, enterprise, NOW) == ConnectPlan(demo_until=None)


def test_plan_rules() -> None:
    assert check_plan_change(HEAD, Plan.BASIC, True, NOW) is Refusal.HEAD_PLAN_LOCKED
    alone_head = check_plan_change(HEAD, Plan.BASIC, False, NOW)
    assert not isinstance(alone_head, Refusal) and alone_head.stops_being_head

    down = check_plan_change(BRANCH, Plan.FREE, False, NOW)
    assert not isinstance(down, Refusal)
    assert down.becomes_incompatible_until == NOW + GRACE_LENGTH

    troubled = PortalFacts(
        id=2, plan=Plan.FREE, head_id=1, demo_until=NOW, incompatible_until=NOW + timedelta(1)
    )
    up = check_plan_change(troubled, Plan.BASIC, False, NOW)
    assert not isinstance(up, Refusal) and up.becomes_compatible and up.ends_demo


def test_a_portal_keeps_an_admin() -> None:
    assert check_role_change([5], 5, Role.EMPLOYEE) is Refusal.LAST_ADMIN
    assert check_role_change([5], 5, None) is Refusal.LAST_ADMIN
    assert check_role_change([5, 6], 5, None) is None
    assert check_role_change([5], 7, None) is None


def test_current_portal() -> None:
    assert current_portal([4], None) == 4
    assert current_portal([4, 5], None) is None
    assert current_portal([4, 5], 5) == 5
    assert current_portal([4, 5], 9) is None


@pytest.mark.parametrize(
    ("chosen", "telegram", "expected"),
    [
        (None, "en-GB", "en"),
        (None, "de", "ru"),
        (None, None, "ru"),
        ("ru", "en", "ru"),
        ("en", "uk", "en"),
    ],
)
def test_language(chosen: str | None, telegram: str | None, expected: str) -> None:
    assert language_for(chosen, telegram) == expected
