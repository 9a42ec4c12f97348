"""The `branchbot` command: run, migrate, import, portal set-plan, audit."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

from bot.config import Settings, SettingsError, load_settings
from domain.rules import Plan
from services.clock import utc_now
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade

logger = logging.getLogger("branchbot")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="branchbot", description="Telegram bot for a company's branch network."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="bring the schema up to date and run the bot")
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

    log = commands.add_parser("audit", help="print the audit log, oldest of the latest first")
    log.add_argument("--portal", metavar="ADDRESS", help="only this portal's entries")
    log.add_argument(
        "--limit", type=_positive, default=50, help="how many latest entries (default 50)"
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
    # aiogram logs every handled update at INFO; that is debugging detail for an operator.
    logging.getLogger("aiogram.event").setLevel(max(logging.getLevelName(level), logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if arguments.command == "run":
            settings.require_token()
            return asyncio.run(run(settings))
        if arguments.command == "migrate":
            return asyncio.run(migrate(settings))
        if arguments.command == "import":
            return asyncio.run(import_file(settings, arguments.file))
        if arguments.command == "portal" and arguments.portal_command == "set-plan":
            return asyncio.run(set_plan(settings, arguments.address, Plan(arguments.plan)))
        if arguments.command == "audit":
            return asyncio.run(print_audit(settings, arguments.portal, arguments.limit))
    except SettingsError as error:
        print(f"branchbot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


async def run(settings: Settings) -> int:
    from bot.app import build_application

    application = await build_application(settings)
    logger.info("starting long polling")
    try:
        await application.run_polling()
    except TelegramUnauthorizedError:
        print("branchbot: Telegram refused BOT_TOKEN (unauthorized)", file=sys.stderr)
        return 2
    except TelegramNetworkError as error:
        print(f"branchbot: cannot reach the Bot API: {error.message}", file=sys.stderr)
        return 1
    return 0


async def migrate(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
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
