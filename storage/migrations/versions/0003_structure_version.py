"""structure version of each portal, raised by triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 18:30:00.000000

`portals.structure_version` goes up whenever a row that a portal's structure page reads
changes: its departments, the placements and memberships of its staff, or the name of one of
its department heads. The triggers live in the database, so every writer counts: the bot on
any instance, the command line, a Bitrix24 sync or plain SQL. Readers only ever compare the
number for equality, so a change may raise it more than once: on SQLite once a row (a cascade
fires the triggers of the rows it takes along), on PostgreSQL once a transaction. A trigger on
the rows that a portal's own deletion takes along updates no row, the portal being gone.

On SQLite a batch migration that rebuilds a table drops the table's triggers with it, and the
rebuild of portals, memberships or departments fails while a trigger names them: a later one
must drop the triggers first and create them again after (`create_sqlite_triggers`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RAISE_VERSION = "UPDATE portals SET structure_version = structure_version + 1"
# The portal of a placement is the portal of its membership.
PORTAL_OF_MEMBERSHIP = "(SELECT portal_id FROM memberships WHERE id = {})"

# On SQLite: trigger name -> (event, table, WHEN condition or None, statement). An update
# counts only when a column the structure page reads really changes: a sync writes rows again
# unchanged.
SQLITE_TRIGGERS: dict[str, tuple[str, str, str | None, str]] = {
    "departments_structure_insert": (
        "INSERT",
        "departments",
        None,
        f"{RAISE_VERSION} WHERE id = NEW.portal_id",
    ),
    "departments_structure_delete": (
        "DELETE",
        "departments",
        None,
        f"{RAISE_VERSION} WHERE id = OLD.portal_id",
    ),
    "departments_structure_update": (
        "UPDATE OF portal_id, parent_id, name, head_person_id",
        "departments",
        "OLD.portal_id IS NOT NEW.portal_id OR OLD.parent_id IS NOT NEW.parent_id"
        " OR OLD.name IS NOT NEW.name OR OLD.head_person_id IS NOT NEW.head_person_id",
        f"{RAISE_VERSION} WHERE id IN (OLD.portal_id, NEW.portal_id)",
    ),
    "membership_departments_structure_insert": (
        "INSERT",
        "membership_departments",
        None,
        f"{RAISE_VERSION} WHERE id = {PORTAL_OF_MEMBERSHIP.format('NEW.membership_id')}",
    ),
    # After a membership's own deletion its placements find no membership: the trigger on
    # memberships has counted that change already.
    "membership_departments_structure_delete": (
        "DELETE",
        "membership_departments",
        None,
        f"{RAISE_VERSION} WHERE id = {PORTAL_OF_MEMBERSHIP.format('OLD.membership_id')}",
    ),
    "membership_departments_structure_update": (
        "UPDATE",
        "membership_departments",
        None,
        f"{RAISE_VERSION} WHERE id IN ({PORTAL_OF_MEMBERSHIP.format('OLD.membership_id')},"
        f" {PORTAL_OF_MEMBERSHIP.format('NEW.membership_id')})",
    ),
    # The staff total is part of the tree.
    "memberships_structure_insert": (
        "INSERT",
        "memberships",
        None,
        f"{RAISE_VERSION} WHERE id = NEW.portal_id",
    ),
    "memberships_structure_delete": (
        "DELETE",
        "memberships",
        None,
        f"{RAISE_VERSION} WHERE id = OLD.portal_id",
    ),
    "memberships_structure_update": (
        "UPDATE OF portal_id",
        "memberships",
        "OLD.portal_id IS NOT NEW.portal_id",
        f"{RAISE_VERSION} WHERE id IN (OLD.portal_id, NEW.portal_id)",
    ),
    # As on PostgreSQL below, a new person heads nothing yet, and a deleted one's departments
    # lose their head through ON DELETE SET NULL, an update of departments.
    "people_structure_update": (
        "UPDATE OF name",
        "people",
        "OLD.name IS NOT NEW.name",
        f"{RAISE_VERSION} WHERE id IN"
        " (SELECT portal_id FROM departments WHERE head_person_id = NEW.id)",
    ),
}

# On PostgreSQL the triggers wait for the commit (deferred), and raise each portal's number once
# per transaction: a sync that writes 20,000 rows of one portal would otherwise update the
# portal's row 20,000 times in one transaction, each time after every earlier version of it,
# and take ten times as long. The portals already raised are kept in a setting that lasts to
# the end of the transaction.
# Limitation: two transactions that change several portals' structures in opposite orders
# can deadlock at commit, when these raise the numbers; PostgreSQL rolls one of them back.
RAISE_ONCE = f"""
CREATE FUNCTION raise_structure_version(portal integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    raised text := coalesce(current_setting('branchbot.structure_raised', true), '');
BEGIN
    IF portal IS NULL OR strpos(raised, ' ' || portal || ' ') > 0 THEN
        RETURN;
    END IF;
    {RAISE_VERSION} WHERE id = portal;
    PERFORM set_config('branchbot.structure_raised', raised || ' ' || portal || ' ', true);
END
$$
"""
# Table -> the body of its trigger function: which portals a changed row belongs to.
POSTGRESQL_FUNCTIONS: dict[str, str] = {
    "departments": """
        IF TG_OP <> 'INSERT' THEN
            PERFORM raise_structure_version(OLD.portal_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM raise_structure_version(NEW.portal_id);
        END IF;
    """,
    "membership_departments": """
        IF TG_OP <> 'INSERT' THEN
            PERFORM raise_structure_version(portal_id) FROM memberships
            WHERE id = OLD.membership_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM raise_structure_version(portal_id) FROM memberships
            WHERE id = NEW.membership_id;
        END IF;
    """,
    "memberships": """
        IF TG_OP <> 'INSERT' THEN
            PERFORM raise_structure_version(OLD.portal_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM raise_structure_version(NEW.portal_id);
        END IF;
    """,
    "people": """
        PERFORM raise_structure_version(portal_id) FROM departments
        WHERE head_person_id = NEW.id;
    """,
}
# Table -> the columns of its update trigger, and the trigger's WHEN condition.
POSTGRESQL_UPDATES: dict[str, tuple[str, str]] = {
    "departments": (
        "portal_id, parent_id, name, head_person_id",
        "(OLD.portal_id, OLD.parent_id, OLD.name, OLD.head_person_id)"
        " IS DISTINCT FROM (NEW.portal_id, NEW.parent_id, NEW.name, NEW.head_person_id)",
    ),
    "membership_departments": (
        "membership_id, department_id",
        "(OLD.membership_id, OLD.department_id)"
        " IS DISTINCT FROM (NEW.membership_id, NEW.department_id)",
    ),
    "memberships": ("portal_id", "OLD.portal_id IS DISTINCT FROM NEW.portal_id"),
    "people": ("name", "OLD.name IS DISTINCT FROM NEW.name"),
}
# People are counted on updates only: a new person heads nothing yet, and a deleted one's
# departments lose their head through ON DELETE SET NULL, an update of departments.
POSTGRESQL_INSERTS_AND_DELETES = ("departments", "membership_departments", "memberships")


def upgrade() -> None:
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("structure_version", sa.Integer(), server_default="0", nullable=False)
        )

    # A head's rename looks up the departments they head, here and in the database's own
    # handling of a person's deletion.
    op.create_index(
        "ix_departments_head_person_id", "departments", ["head_person_id"], unique=False
    )

    if op.get_bind().dialect.name == "postgresql":
        create_postgresql_triggers()
    else:
        create_sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        drop_postgresql_triggers()
    else:
        drop_sqlite_triggers()

    op.drop_index("ix_departments_head_person_id", table_name="departments")
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.drop_column("structure_version")


def create_sqlite_triggers() -> None:
    for name, (event, table, condition, statement) in SQLITE_TRIGGERS.items():
        when = f" WHEN {condition}" if condition else ""
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}"
            f" BEGIN {statement}; END"
        )


def drop_sqlite_triggers() -> None:
    for name in SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def create_postgresql_triggers() -> None:
    op.execute(RAISE_ONCE)
    deferred = "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
    for table, body in POSTGRESQL_FUNCTIONS.items():
        function = f"{table}_structure_changed"
        op.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"    BEGIN\n{body}\n        RETURN NULL;\n    END\n$$"
        )
        if table in POSTGRESQL_INSERTS_AND_DELETES:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_structure_insert_delete"
                f" AFTER INSERT OR DELETE ON {table} {deferred}"
                f" EXECUTE FUNCTION {function}()"
            )
        columns, condition = POSTGRESQL_UPDATES[table]
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {table}_structure_update"
            f" AFTER UPDATE OF {columns} ON {table} {deferred}"
            f" WHEN ({condition}) EXECUTE FUNCTION {function}()"
        )


def drop_postgresql_triggers() -> None:
    for table in POSTGRESQL_FUNCTIONS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_structure_update ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_structure_insert_delete ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_structure_changed()")
    op.execute("DROP FUNCTION IF EXISTS raise_structure_version(integer)")
