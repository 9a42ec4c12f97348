"""Alembic environment: runs on a connection handed in, or on DATABASE_URL."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from storage.db import create_engine
from storage.models import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_settings() -> None:
    from bot.config import load_settings

    url = context.config.get_main_option("sqlalchemy.url") or load_settings().database_url
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
elif context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: give a database")
else:
    asyncio.run(run_with_settings())
