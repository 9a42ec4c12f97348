"""The `branchbot` command: run, migrate, import, portal set-plan/link/unlink, sync, audit."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramUnauthorizedError,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings, SettingsError, load_settings
from domain.rules import Plan
from services.clock import utc_now
from storage.connectivity import DatabaseUnavailable, wait_for_database
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Portal

logger = logging.getLogger("branchbot")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="branchbot", description="Telegram bot for a company's branch network."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_command = commands.add_parser("run", help="bring the schema up to date and run the bot")
    run_command.add_argument(
        "--webhook",
        action="store_true",
        help="take updates by webhook (WEBHOOK_URL, WEBHOOK_SECRET) instead of long polling;"
        " needed to run several instances",
    )
    commands.add_parser("migrate", help="bring the database schema up to date and exit")
    load = commands.add_parser("import", help="load a network file (all or nothing)")
    load.add_argument("file", type=Path, help="the network file (JSON)")

    portal = commands.add_parser("portal", help="record changes made outside the bot")
    portal_commands = portal.add_subparsers(dest="portal_command", required=True, metavar="ACTION")
    set_plan = portal_commands.add_parser(
        "set-plan", help="record a portal's new plan (from billing) and apply the network rules"
    )
    set_plan.add_argument("address", help="the portal's address")
    set_plan.add_argument("plan", choices=[plan.value for plan in Plan], help="the new plan")
    link = portal_commands.add_parser(
        "link", help="link a portal to its Bitrix24 by an incoming webhook, then sync it"
    )
    link.add_argument("address", help="the portal's address")
    link.add_argument(
        "url", help="the webhook https://<portal>/rest/<user id>/<secret>/, or - to read stdin"
    )
    unlink = portal_commands.add_parser("unlink", help="forget a portal's Bitrix24 webhook")
    unlink.add_argument("address", help="the portal's address")
    sync = commands.add_parser("sync", help="sync a linked portal's staff and structure now")
    sync.add_argument("address", help="the portal's address")

    log = commands.add_parser("audit", help="print the audit log, oldest of the latest first")
    log.add_argument("--portal", metavar="ADDRESS", help="only this portal's entries")
    log.add_argument(
        "--limit", type=_positive, default=50, help="how many latest entries (default 50)"
    )

    due = commands.add_parser(
        "reminders", help="print the reminders due, sent, and who could not be reached"
    )
    due.add_argument(
        "--limit", type=_positive, default=50, help="how many latest lines a part (default 50)"
    )
    return root


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces its context on every command, aiogram logs every handled update and
    # APScheduler every run of a job (the outbox's, every 2 seconds) at INFO: debugging detail,
    # not what an operator reads. Their warnings still show.
    quieter = max(logging.getLevelName(level), logging.WARNING)
    for name in ("alembic", "aiogram.event", "apscheduler"):
        logging.getLogger(name).setLevel(quieter)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if arguments.command == "run":
            settings.require_token()
            webhook = arguments.webhook or settings.update_mode == "webhook"
            if webhook:
                settings.require_webhook()
            return asyncio.run(run(settings, webhook=webhook))
        if arguments.command == "migrate":
            return asyncio.run(migrate(settings))
        if arguments.command == "import":
            return asyncio.run(import_file(settings, arguments.file))
        if arguments.command == "portal" and arguments.portal_command == "link":
            url = sys.stdin.readline() if arguments.url == "-" else arguments.url
            return asyncio.run(link_portal(settings, arguments.address, url))
        if arguments.command == "portal" and arguments.portal_command == "unlink":
            return asyncio.run(unlink_portal(settings, arguments.address))
        if arguments.command == "sync":
            return asyncio.run(sync_portal(settings, arguments.address))
        if arguments.command == "portal" and arguments.portal_command == "set-plan":
            return asyncio.run(set_plan(settings, arguments.address, Plan(arguments.plan)))
        if arguments.command == "audit":
            return asyncio.run(print_audit(settings, arguments.portal, arguments.limit))
        if arguments.command == "reminders":
            from bot.reminder_report import print_reminders

            return asyncio.run(print_reminders(settings, arguments.limit))
    except SettingsError as error:
        print(f"branchbot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


async def run(settings: Settings, *, webhook: bool = False) -> int:
    from bot.app import build_application
    from bot.webhook import run_webhook

    try:
        application = await build_application(settings)
    except DatabaseUnavailable as error:
        print(f"branchbot: the database cannot be reached: {error}", file=sys.stderr)
        return 1
    try:
        if webhook:
            logger.info("starting the webhook server")
            await run_webhook(application)
        else:
            logger.info("starting long polling")
            await application.run_polling()
    except TelegramUnauthorizedError:
        print("branchbot: Telegram refused BOT_TOKEN (unauthorized)", file=sys.stderr)
        return 2
    except TelegramBadRequest as error:
        print(f"branchbot: Telegram refused a start-up request: {error.message}", file=sys.stderr)
        return 2
    except TelegramNetworkError as error:
        print(f"branchbot: cannot reach the Bot API: {error.message}", file=sys.stderr)
        return 1
    return 0


async def migrate(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        await wait_for_database(engine)
        await upgrade(engine)
    except DatabaseUnavailable as error:
        print(f"branchbot: the database cannot be reached: {error}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print("the database schema is up to date")
    return 0


async def import_file(settings: Settings, path: Path) -> int:
    from services.importer import NetworkFileError, import_network, load_file

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        try:
            data = load_file(path)
            async with create_session_factory(engine)() as session:
                summary = await import_network(session, data, now=utc_now())
                await session.commit()
        except NetworkFileError as error:
            print(f"branchbot: {path} was not loaded; nothing was written:", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"branchbot: cannot read {path}: {error.strerror}", file=sys.stderr)
            return 1
    finally:
        await engine.dispose()
    for line in summary.lines():
        print(line)
    return 0


async def set_plan(settings: Settings, address: str, plan: Plan) -> int:
    """Record a plan from billing; what it changed is printed, the bot tells the people."""
    from bot.access import refusal_text
    from bot.i18n import create_i18n
    from bot.views import instant
    from domain.addresses import AddressError, display_address
    from domain.rules import Refusal
    from services import network

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            try:
                result = await network.set_plan(session, address, plan, utc_now())
            except AddressError:
                print(f"branchbot: {address!r} is not a portal address", file=sys.stderr)
                return 1
            except network.UnknownPortal:
                print(f"branchbot: no portal has the address {address}", file=sys.stderr)
                return 1
            # A refusal is written to the audit log too.
            await session.commit()
    finally:
        await engine.dispose()

    if isinstance(result, Refusal):
        i18n = create_i18n()
        with i18n.context(), i18n.use_locale("en"):
            reason = refusal_text(result)
        print(f"branchbot: the plan of {address} was not changed: {reason}", file=sys.stderr)
        return 1

    shown = display_address(result.portal.address)
    if not result.changed:
        print(f"{shown}: already on {plan.value}; nothing changed")
        return 0
    print(f"{shown}: plan {result.old_plan.value} -> {plan.value}")
    change = result.change
    if change.stops_being_head:
        print("  it is no longer the head of a network")
    if change.ends_demo:
        print("  its demo has ended")
    if change.becomes_incompatible_until is not None:
        moment = instant(change.becomes_incompatible_until, settings.zone)
        print(
            f"  it is incompatible with its network: disconnected on {moment} "
            "unless it moves to a commercial plan"
        )
    if change.becomes_compatible:
        print("  it is compatible with its network again")
    if result.notified:
        print(f"  {result.notified} people will be told by the running bot")
    return 0


async def link_portal(settings: Settings, address: str, url: str) -> int:
    """Link a portal to its Bitrix24 and sync it at once; the URL is never printed back."""
    from domain.addresses import AddressError, canonical_address
    from services import sync
    from services.bitrix import WebhookError, parse_webhook, serves

    try:
        webhook = parse_webhook(url, allow_loopback_http=settings.allow_loopback_http_webhooks)
    except WebhookError as error:
        print(f"branchbot: the webhook was not linked: {error}", file=sys.stderr)
        return 1
    try:
        wanted = canonical_address(address)
    except AddressError:
        wanted = None  # the portal lookup below says what is wrong with the address
    if wanted is not None and not serves(webhook, wanted):
        print(
            f"branchbot: the webhook was not linked: it is for {webhook.host}, not {wanted}",
            file=sys.stderr,
        )
        return 1

    async def link(session: AsyncSession, portal: Portal) -> None:
        await sync.link_portal(
            session, portal, webhook, actor=None, now=utc_now(), actor_text="command line"
        )
        print(f"{portal.address}: linked to Bitrix24 through {webhook.masked}")

    return await _on_portal(settings, address, link, then_sync=True)


async def unlink_portal(settings: Settings, address: str) -> int:
    from services import sync

    async def unlink(session: AsyncSession, portal: Portal) -> None:
        done = await sync.unlink_portal(
            session, portal, actor=None, now=utc_now(), actor_text="command line"
        )
        print(f"{portal.address}: " + ("unlinked from Bitrix24" if done else "was not linked"))

    return await _on_portal(settings, address, unlink, then_sync=False)


async def sync_portal(settings: Settings, address: str) -> int:
    async def nothing(session: AsyncSession, portal: Portal) -> None:
        return None

    return await _on_portal(settings, address, nothing, then_sync=True)


async def _on_portal(
    settings: Settings,
    address: str,
    work: Callable[[AsyncSession, Portal], Awaitable[None]],
    *,
    then_sync: bool,
) -> int:
    """Do `work` on the portal in one transaction, then sync it, printing the progress."""
    from domain.addresses import AddressError, canonical_address
    from services import sync

    try:
        canonical = canonical_address(address)
    except AddressError:
        print(f"branchbot: {address!r} is not a portal address", file=sys.stderr)
        return 1
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        factory = create_session_factory(engine)
        async with factory() as session:
            found = await session.execute(select(Portal).where(Portal.address == canonical))
            portal = found.scalar_one_or_none()
            if portal is None:
                print(f"branchbot: no portal has the address {canonical}", file=sys.stderr)
                return 1
            await work(session, portal)
            await session.commit()
        if not then_sync:
            return 0

        async def progress(read: int, total: int | None) -> None:
            print(f"  read {read} of {total if total is not None else '?'} people")

        try:
            outcome = await sync.Syncer(factory).sync(
                portal.id, trigger=sync.Trigger.COMMAND_LINE, progress=progress
            )
        except sync.NotLinked:
            print(f"branchbot: {canonical} is not linked to Bitrix24", file=sys.stderr)
            return 1
    finally:
        await engine.dispose()
    if outcome.failure is not None:
        print(f"branchbot: the sync of {canonical} failed: {outcome.failure.words}")
        print("  the staff and structure were kept as they were", file=sys.stderr)
        return 1
    changes = outcome.changes or sync.SyncChanges()
    print(
        f"{canonical}: synced in {outcome.requests} requests: {outcome.staff} people "
        f"({changes.people_added} added, {changes.people_updated} updated, "
        f"{changes.people_left} left), {outcome.departments} departments "
        f"({changes.departments_added} added, {changes.departments_updated} updated, "
        f"{changes.departments_removed} removed)"
    )
    return 0


async def print_audit(settings: Settings, address: str | None, limit: int) -> int:
    """The latest entries of the audit log, oldest first, one a line."""
    from bot.views import instant
    from domain.addresses import AddressError
    from services import network

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with create_session_factory(engine)() as session:
            try:
                entries = await network.audit_entries(session, portal_address=address, limit=limit)
            except AddressError:
                print(f"branchbot: {address!r} is not a portal address", file=sys.stderr)
                return 1
    finally:
        await engine.dispose()

    if not entries:
        print("the audit log has no entries" + (f" for {address}" if address else ""))
        return 0
    for entry in reversed(entries):
        details = "" if entry.details in ("", "{}") else f"  {entry.details}"
        print(
            f"{instant(entry.at, settings.zone)}  {entry.outcome:<9} {entry.action:<13} "
            f"{entry.portal_address or '-'}  {entry.actor}{details}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
