"""A portal's departments as a text tree with box-drawing connectors and headcounts."""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Past this depth the connectors would crowd out the names; deeper levels are drawn at it.
# Limitation: departments nested deeper than MAX_DRAWN_DEPTH are drawn at that depth.
MAX_DRAWN_DEPTH = 12


@dataclass(frozen=True, slots=True)
class DepartmentFacts:
    id: int
    name: str
    parent_id: int | None
    head_name: str | None


@dataclass(frozen=True, slots=True)
class TreeLine:
    """One department in the drawn tree: `prefix` holds the connectors before the name."""

    prefix: str
    name: str
    head_name: str | None
    headcount: int


@dataclass(frozen=True, slots=True)
class StructureTree:
    lines: list[TreeLine]
    staff_total: int
    without_department: int


def build_tree(
    departments: Iterable[DepartmentFacts],
    placements: Iterable[tuple[int, int | None]],
) -> StructureTree:
    """Draw the tree; `placements` pairs each membership id with one department id or None.

    Each department appears once under its parent, children by name. A department whose parent
    is missing, or that sits in a cycle, is drawn at the top level so nothing is lost. The
    headcount counts each person once across the department and everything under it.
    """
    by_id = {department.id: department for department in departments}
    everyone: set[int] = set()
    places: dict[int, set[int]] = defaultdict(set)
    for membership_id, department_id in placements:
        everyone.add(membership_id)
        if department_id is not None and department_id in by_id:
            places[membership_id].add(department_id)
    alone = Counter(next(iter(found)) for found in places.values() if len(found) == 1)
    shared = [
        (membership_id, department_id)
        for membership_id, found in places.items()
        if len(found) > 1
        for department_id in found
    ]
    return tree_from_counts(by_id.values(), alone, shared, len(everyone))


def tree_from_counts(
    departments: Iterable[DepartmentFacts],
    alone: Mapping[int, int],
    shared: Iterable[tuple[int, int]],
    staff_total: int,
) -> StructureTree:
    """Draw the tree from counts, as `build_tree` does from every placement.

    `alone` counts, per department id, the memberships placed in that one department only;
    `shared` pairs each membership placed in several departments with each of them. Ids that
    are not among `departments` (another portal's) place nobody. Counted in SQL, a portal of
    thousands of people comes to a row per department and one per exception.
    """
    by_id = {department.id: department for department in departments}
    shared_in: dict[int, set[int]] = defaultdict(set)
    for membership_id, department_id in shared:
        if department_id in by_id:
            shared_in[department_id].add(membership_id)
    placed = sum(count for department_id, count in alone.items() if department_id in by_id)
    placed += len(set().union(*shared_in.values()))

    children: dict[int | None, list[DepartmentFacts]] = defaultdict(list)
    for department in by_id.values():
        parent = department.parent_id if department.parent_id in by_id else None
        children[parent].append(department)
    for siblings in children.values():
        siblings.sort(key=lambda item: (item.name.casefold(), item.id))

    reachable = _reachable_from_roots(children)
    for department in sorted(by_id.values(), key=lambda item: item.id):
        if department.id not in reachable:
            # A cycle: lift its first member to the top so the whole loop is drawn once.
            children[department.parent_id].remove(department)
            children[None].append(department)
            reachable |= _reachable_from(department.id, children)

    headcounts = _headcounts(children, alone, shared_in)
    lines: list[TreeLine] = []
    _draw(None, "", 0, children, headcounts, lines)
    return StructureTree(
        lines=lines, staff_total=staff_total, without_department=staff_total - placed
    )


def _reachable_from_roots(children: dict[int | None, list[DepartmentFacts]]) -> set[int]:
    found: set[int] = set()
    for root in children.get(None, []):
        found |= _reachable_from(root.id, children)
    return found


def _reachable_from(start: int, children: dict[int | None, list[DepartmentFacts]]) -> set[int]:
    found = {start}
    stack = [start]
    while stack:
        for child in children.get(stack.pop(), []):
            if child.id not in found:
                found.add(child.id)
                stack.append(child.id)
    return found


def _headcounts(
    children: dict[int | None, list[DepartmentFacts]],
    alone: Mapping[int, int],
    shared_in: dict[int, set[int]],
) -> dict[int, int]:
    """Distinct people in each department and below it, without recursion (deep trees).

    People in one department only are summed up the tree; the few in several are kept as
    sets, so each counts once under a department that holds more than one of theirs.
    """
    counts: dict[int, int] = {}
    subtree_alone: dict[int, int] = {}
    subtree_shared: dict[int, set[int]] = {}
    order: list[int] = []
    stack = [root.id for root in children.get(None, [])]
    while stack:
        current = stack.pop()
        order.append(current)
        stack.extend(child.id for child in children.get(current, []))
    for department_id in reversed(order):
        placed_alone = alone.get(department_id, 0)
        members = set(shared_in.get(department_id, ()))
        for child in children.get(department_id, []):
            placed_alone += subtree_alone.pop(child.id)
            members |= subtree_shared.pop(child.id)
        subtree_alone[department_id] = placed_alone
        subtree_shared[department_id] = members
        counts[department_id] = placed_alone + len(members)
    return counts


def _draw(
    parent: int | None,
    indent: str,
    depth: int,
    children: dict[int | None, list[DepartmentFacts]],
    headcounts: dict[int, int],
    lines: list[TreeLine],
) -> None:
    # An explicit stack keeps a 1,000-level chain from hitting Python's recursion limit.
    stack: list[tuple[int | None, str, int, int]] = [(parent, indent, depth, 0)]
    while stack:
        node, node_indent, node_depth, next_child = stack.pop()
        siblings = children.get(node, [])
        if next_child >= len(siblings):
            continue
        stack.append((node, node_indent, node_depth, next_child + 1))

        department = siblings[next_child]
        is_last = next_child == len(siblings) - 1
        prefix = node_indent + ("└─ " if is_last else "├─ ")
        child_indent = node_indent
        if node_depth < MAX_DRAWN_DEPTH:
            child_indent += "   " if is_last else "│  "
        lines.append(
            TreeLine(
                prefix=prefix,
                name=department.name,
                head_name=department.head_name,
                headcount=headcounts.get(department.id, 0),
            )
        )
        stack.append((department.id, child_indent, node_depth + 1, 0))
