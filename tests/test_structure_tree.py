"""The department tree: each department once, under its parent, with distinct headcounts."""

from domain.structure import DepartmentFacts, build_tree


def drawn(tree) -> list[str]:
    return [f"{line.prefix}{line.name} ({line.headcount})" for line in tree.lines]


def test_tree_with_connectors_heads_and_headcounts() -> None:
    departments = [
        DepartmentFacts(1, "Sales", None, "Boris"),
        DepartmentFacts(2, "B2B", 1, None),
        DepartmentFacts(3, "B2C", 1, None),
        DepartmentFacts(4, "HR", None, None),
        DepartmentFacts(5, "Key accounts", 2, "Vera"),
    ]
    # Membership 3 sits in B2B and Key accounts: Sales counts them once.
    placements = [(1, 1), (2, 2), (3, 5), (3, 2), (4, None), (5, 4)]

    tree = build_tree(departments, placements)

    assert drawn(tree) == [
        "├─ HR (1)",
        "└─ Sales (3)",
        "   ├─ B2B (2)",
        "   │  └─ Key accounts (1)",
        "   └─ B2C (0)",
    ]
    assert [line.head_name for line in tree.lines] == [None, "Boris", None, "Vera", None]
    assert tree.staff_total == 5
    assert tree.without_department == 1


def test_cycles_and_missing_parents_lose_nothing() -> None:
    departments = [
        DepartmentFacts(1, "Loop A", 2, None),
        DepartmentFacts(2, "Loop B", 1, None),
        DepartmentFacts(3, "Orphan", 99, None),
    ]
    tree = build_tree(departments, [(1, 1), (2, 2)])

    names = sorted(line.name for line in tree.lines)
    assert names == ["Loop A", "Loop B", "Orphan"]
    loop_top = next(
        line
        for line in tree.lines
        if line.prefix.endswith("─ ") and "Loop" in line.name and len(line.prefix) == 3
    )
    assert loop_top.headcount == 2


def test_a_deep_chain_needs_no_recursion() -> None:
    depth = 3000
    departments = [
        DepartmentFacts(number, f"D{number}", number - 1 if number > 1 else None, None)
        for number in range(1, depth + 1)
    ]
    tree = build_tree(departments, [(1, depth)])

    assert len(tree.lines) == depth
    assert all(line.headcount == 1 for line in tree.lines)
    assert max(len(line.prefix) for line in tree.lines) < 60
