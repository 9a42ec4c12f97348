"""Migrations on the database the suite runs on: from nothing, and from the first release's
schema with data in every table, which `branchbot migrate` must keep to the last row."""

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli import main
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, Base, Invite, Membership, Notice, Person, Portal
from tests.databases import fresh_database, postgresql_only

PREVIOUS_RELEASE = "0001"
# The first release's tables, as its schema (revision 0001) has them.
FIRST_RELEASE_TABLES = {
    "portals",
    "people",
    "memberships",
    "departments",
    "membership_departments",
    "invites",
    "staff_queries",
    "notices",
    "audit_log",
}
BIG_TELEGRAM_ID = 7_123_456_789  # above 2**32: Telegram's ids are 64-bit
EPOCH = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def empty_database(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A database with no tables at all, not even Alembic's."""
    with fresh_database(tmp_path, name="empty", empty=True) as url:
        yield url


def schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def tables_of(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_an_empty_database_is_migrated_to_exactly_the_models(empty_database: str) -> None:
    engine = create_engine(empty_database)
    try:
        assert await tables_of(engine) == set()
        await upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(schema_differences) == []
        # Safe to repeat.
        await upgrade(engine)
        assert await tables_of(engine) >= FIRST_RELEASE_TABLES | {"processed_updates"}
    finally:
        await engine.dispose()


def first_release_rows(dialect: str) -> list[str]:
    """One or more rows in every table of the first release, as plain SQL of that time."""
    # Instants as each database kept them: naive UTC text on SQLite, timestamptz on PostgreSQL.
    at = "'2026-12-01 09:00:00.000000'" if dialect == "sqlite" else "'2026-12-01 09:00:00+00'"
    return [
        "INSERT INTO portals (id, address, name, plan, is_head, head_id, connected_at,"
        " demo_until, ever_in_network, incompatible_until, created_at) VALUES"
        f" (1, 'acme.ru', 'Acme HQ', 'enterprise', TRUE, NULL, NULL, NULL, TRUE, NULL, {at}),"
        f" (2, 'spb.acme.ru', 'Acme SPb', 'free', FALSE, 1, {at}, {at}, TRUE, NULL, {at}),"
        f" (3, 'nsk.acme.ru', 'Acme Nsk', 'standard', FALSE, NULL, NULL, NULL, FALSE, NULL,"
        f" {at})",
        "INSERT INTO people (id, telegram_id, name, name_folded, username, email, phone,"
        " language, telegram_language, current_portal_id, started_at, blocked_at, created_at)"
        f" VALUES (1, {BIG_TELEGRAM_ID}, 'Анна Петрова', 'анна петрова', 'anna', 'anna@acme.ru',"
        f" '+79990000001', 'ru', 'ru', 2, {at}, NULL, {at}),"
        " (2, NULL, 'Boris', 'boris', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        f" {at})",
        "INSERT INTO departments (id, portal_id, key, name, parent_id, head_person_id) VALUES"
        " (1, 2, 'sales', 'Sales', NULL, 1), (2, 2, 'b2b', 'B2B', 1, NULL)",
        "INSERT INTO memberships (id, person_id, portal_id, role, position) VALUES"
        " (1, 1, 1, 'admin', 'CEO'), (2, 1, 2, 'admin', NULL), (3, 2, 2, 'employee', NULL)",
        "INSERT INTO membership_departments (membership_id, department_id) VALUES (3, 2)",
        "INSERT INTO invites (id, token, portal_id, created_by_id, role, department_id,"
        " person_id, created_at, expires_at, used_at, used_by_id, revoked_at) VALUES"
        f" (1, 'tok-1', 2, 1, 'employee', 1, NULL, {at}, {at}, NULL, NULL, NULL),"
        f" (2, 'tok-2', 2, 1, 'employee', NULL, 2, {at}, {at}, {at}, 2, NULL)",
        "INSERT INTO staff_queries (id, person_id, portal_id, text, created_at) VALUES"
        f" (1, 1, 2, 'анна', {at})",
        "INSERT INTO notices (id, person_id, kind, params, dedupe_key, status, attempts,"
        " last_error, created_at, not_before, sent_at) VALUES"
        f" (1, 1, 'invite_joined', '{{\"name\": \"Boris\"}}', 'join:2', 'sent', 1, NULL, {at},"
        f" {at}, {at}),"
        f" (2, 1, 'branch_connected', '{{}}', 'connect:2', 'pending', 0, NULL, {at}, {at},"
        " NULL)",
        "INSERT INTO audit_log (id, at, actor_person_id, actor, action, portal_id,"
        " portal_address, network_head_id, details, outcome) VALUES"
        f" (1, {at}, 1, 'Анна Петрова', 'connect', 2, 'spb.acme.ru', 1, '{{}}', 'done'),"
        f" (2, {at}, NULL, 'system', 'demo_ended', 2, 'spb.acme.ru', 1, '', 'done')",
    ]


async def row_counts(engine: AsyncEngine, tables: set[str]) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table: int(
                (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            )
            for table in sorted(tables)
        }


async def test_migrate_keeps_every_row_of_the_previous_release(
    empty_database: str, tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(empty_database)
    try:
        await upgrade(engine, PREVIOUS_RELEASE)
        assert await tables_of(engine) == FIRST_RELEASE_TABLES | {"alembic_version"}
        async with engine.begin() as connection:
            for statement in first_release_rows(engine.dialect.name):
                await connection.execute(text(statement))
            if engine.dialect.name == "postgresql":
                # The rows name their ids, so move the id sequences on past them, as the
                # first release's own inserts would have.
                for table in FIRST_RELEASE_TABLES - {"membership_departments"}:
                    await connection.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                            f" (SELECT max(id) FROM {table}))"
                        )
                    )
        before = await row_counts(engine, FIRST_RELEASE_TABLES)
        assert all(before.values()), before
    finally:
        await engine.dispose()

    # As an operator upgrades: `branchbot migrate` on the database of the previous release.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", empty_database)
    assert await asyncio.to_thread(main, ["migrate"]) == 0

    engine = create_engine(empty_database)
    try:
        assert await row_counts(engine, FIRST_RELEASE_TABLES) == before
        async with engine.connect() as connection:
            assert await connection.run_sync(schema_differences) == []
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert revision != PREVIOUS_RELEASE

        # The rows read back through today's models, values intact.
        async with create_session_factory(engine)() as session:
            anna = await session.get(Person, 1)
            assert anna is not None
            assert (anna.telegram_id, anna.name, anna.created_at) == (
                BIG_TELEGRAM_ID,
                "Анна Петрова",
                EPOCH,
            )
            portals = (await session.scalars(select(Portal).order_by(Portal.id))).all()
            assert [(p.address, p.is_head, p.head_id) for p in portals] == [
                ("acme.ru", True, None),
                ("spb.acme.ru", False, 1),
                ("nsk.acme.ru", False, None),
            ]
            assert portals[1].demo_until == EPOCH
            memberships = await session.scalars(select(Membership).order_by(Membership.id))
            assert [m.external_id for m in memberships] == [None, None, None]
            notices = (await session.scalars(select(Notice).order_by(Notice.id))).all()
            assert [(n.status, n.params) for n in notices] == [
                ("sent", '{"name": "Boris"}'),
                ("pending", "{}"),
            ]
            invite = await session.get(Invite, 2)
            assert invite is not None and invite.used_at == EPOCH
            assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 2

        # And the bot can go on writing where the first release stopped.
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO portals (address, name, plan, is_head, ever_in_network,"
                    " created_at) VALUES ('new.acme.ru', 'New', 'basic', FALSE, FALSE,"
                    " CURRENT_TIMESTAMP)"
                )
            )
    finally:
        await engine.dispose()


@postgresql_only
async def test_instances_starting_together_migrate_one_after_the_other(
    empty_database: str,
) -> None:
    engines = [create_engine(empty_database) for _ in range(4)]
    try:
        # Without the turn-taking they block each other on the first CREATE TABLE.
        await asyncio.wait_for(asyncio.gather(*(upgrade(engine) for engine in engines)), 60)
        async with engines[0].connect() as connection:
            assert await connection.run_sync(schema_differences) == []
    finally:
        for engine in engines:
            await engine.dispose()
