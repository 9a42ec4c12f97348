"""Bitrix24: linking a portal by its webhook, syncing it now, and finding oneself by phone."""

import logging
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.formatting import Bold, Code, Text
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.access import member_access, refusal_text
from bot.commands import start as start_commands
from bot.commands.choose import current_or_ask
from bot.commands.portals import send_portal_list
from bot.config import Settings
from bot.keyboards import builders
from bot.keyboards.callbacks import PhoneLinkTap, PortalAction, PortalTap
from bot.notices.bitrix import failure_text
from bot.ui import acknowledge
from domain.addresses import display_address
from domain.rules import MenuItem, Refusal, Role
from services import sync
from services.bitrix import Webhook, WebhookError, parse_webhook, serves
from services.people import display_name, my_portals
from services.phones import Caller, link_by_phone, masked_phone, normalise_phone
from storage.models import Person, Portal

logger = logging.getLogger(__name__)


async def link_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    session: AsyncSession,
    person: Person | None,
    settings: Settings,
    syncer: sync.Syncer,
    now: datetime,
) -> None:
    """/link <webhook>: link the current portal to its Bitrix24, then sync it."""
    # The message holds a secret: it goes before anything else can fail.
    if command.args:
        await _delete(bot, message)
    if not command.args:
        await message.answer(
            **Text(
                _("Send the portal's incoming webhook from Bitrix24 like this:"),
                "\n",
                Code("/link https://<portal>/rest/<user id>/<secret>/"),
                "\n\n",
                _("It needs the rights to read users and departments (user, department)."),
                " ",
                _("I delete the message with it as soon as I have read it."),
            ).as_kwargs()
        )
        return
    try:
        webhook = parse_webhook(
            command.args, allow_loopback_http=settings.allow_loopback_http_webhooks
        )
    except WebhookError:
        await message.answer(
            _("That is not an incoming webhook: it must be an https:// address like")
            + " https://&lt;portal&gt;/rest/&lt;user id&gt;/&lt;secret&gt;/"
        )
        return

    access = await current_or_ask(message, session, person, PortalAction.GO)
    if access is None or person is None:
        if person is not None:
            await message.answer(_("Then send /link with the webhook again."))
        return
    if access.portal.role is not Role.ADMIN:
        await message.answer(refusal_text(Refusal.NOT_ADMIN))
        return
    portal = await session.get(Portal, access.portal.id)
    if portal is None:
        return
    if not serves(webhook, portal.address):
        # Another portal's webhook would write that portal's staff into this one.
        await message.answer(
            _("That webhook belongs to another portal: its address must be {address}.").format(
                address=display_address(portal.address)
            )
        )
        return
    await sync.link_portal(session, portal, webhook, actor=person, now=now)
    # The sync runs on after this update, in sessions of its own that must see the link.
    await session.commit()
    status = await message.answer(
        **Text(
            _("Linked "), Bold(portal.name), _(" to Bitrix24 through "), webhook.masked, "."
        ).as_kwargs()
    )
    logger.info("person %s linked portal %s", person.id, portal.address)
    _start_sync(syncer, bot, status, portal.id, person.id, sync.Trigger.LINK, webhook)


async def sync_from_menu(
    callback: CallbackQuery,
    callback_data: PortalTap,
    bot: Bot,
    session: AsyncSession,
    person: Person | None,
    syncer: sync.Syncer,
) -> None:
    """The menu's "sync now": read the portal from Bitrix24 at once."""
    access = await member_access(session, person, callback_data.portal_id)
    if access is None or person is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    if MenuItem.SYNC not in access.items:
        await acknowledge(callback, refusal_text(Refusal.NOT_ADMIN), alert=True)
        return
    if syncer.is_running(access.portal.id):
        await acknowledge(callback, _("This portal is being synced right now."))
        return
    await acknowledge(callback, _("Syncing from Bitrix24…"))
    status = await bot.send_message(
        chat_id=callback.from_user.id,
        **Text(_("Syncing "), Bold(access.portal.name), _(" from Bitrix24…")).as_kwargs(),
    )
    _start_sync(syncer, bot, status, access.portal.id, person.id, sync.Trigger.BOT, None)


def _start_sync(
    syncer: sync.Syncer,
    bot: Bot,
    status: Message,
    portal_id: int,
    person_id: int,
    trigger: sync.Trigger,
    webhook: Webhook | None,
) -> None:
    """Sync in the background; the status message shows the progress, then the outcome."""

    async def progress(read: int, total: int | None) -> None:
        shown = _("{read} of {total} people read").format(read=read, total=total or "?")
        await _edit(bot, status, Text(_("Syncing from Bitrix24…"), "\n", shown))

    async def run() -> None:
        try:
            outcome = await syncer.sync(
                portal_id, trigger=trigger, actor_id=person_id, progress=progress
            )
        except sync.NotLinked:
            await _edit(bot, status, Text(_("The portal is no longer linked to Bitrix24.")))
            return
        await _edit(bot, status, outcome_text(outcome))

    syncer.in_background(run())


def outcome_text(outcome: sync.SyncOutcome) -> Text:
    """How a sync ended, for the admin who asked for it."""
    if outcome.failure is not None:
        return Text(
            "⚠️ ",
            _("The sync of "),
            Bold(outcome.portal_name),
            _(" failed."),
            "\n",
            failure_text(outcome.failure.kind.value),
            "\n\n",
            _("The staff and structure stay as they were."),
        )
    changes = outcome.changes or sync.SyncChanges()
    return Text(
        "✅ ",
        Bold(outcome.portal_name),
        _(" is synced from Bitrix24."),
        "\n",
        _("People: {count} ({added} added, {updated} updated, {left} left)").format(
            count=outcome.staff,
            added=changes.people_added,
            updated=changes.people_updated,
            left=changes.people_left,
        ),
        "\n",
        _("Departments: {count} ({added} added, {updated} updated, {removed} removed)").format(
            count=outcome.departments,
            added=changes.departments_added,
            updated=changes.departments_updated,
            removed=changes.departments_removed,
        ),
    )


async def _edit(bot: Bot, status: Message, content: Text) -> None:
    try:
        await bot.edit_message_text(
            chat_id=status.chat.id, message_id=status.message_id, **content.as_kwargs()
        )
    except TelegramBadRequest as error:
        # The same progress twice, or the person deleted the message: nothing to show.
        logger.debug("sync status not shown: %s", error.message)


async def _delete(bot: Bot, message: Message) -> None:
    try:
        await bot.delete_message(chat_id=message.chat.id, message_id=message.message_id)
    except TelegramBadRequest as error:
        logger.warning("a message with a webhook could not be deleted: %s", error.message)


# Finding oneself on linked portals by one's own phone number.


async def offer_phone(callback: CallbackQuery, bot: Bot) -> None:
    """The portal list's "find my portals by phone": the button that shares one's number."""
    await acknowledge(callback)
    await bot.send_message(
        chat_id=callback.from_user.id,
        text=phone_offer_text(),
        reply_markup=builders.share_contact(),
    )


def phone_offer_text() -> str:
    return _(
        "If your company's portal is linked to Bitrix24, I can find you on its staff by your "
        "phone number. Tap the button below to share it."
    )


async def start_for_stranger(
    message: Message, session: AsyncSession, person: Person | None
) -> None:
    """/start from someone on no portal: the greeting, then the phone button."""
    if person is not None and await my_portals(session, person.id):
        raise SkipHandler
    await start_commands.start(message, session, person)
    await message.answer(phone_offer_text(), reply_markup=builders.share_contact())


def _is_plain_start(message: Message, command: CommandObject) -> bool:
    return not command.args


async def contact_shared(
    message: Message, session: AsyncSession, person: Person | None, now: datetime
) -> None:
    """A shared contact: only one's own, matched against the staff of linked portals."""
    contact = message.contact
    user = message.from_user
    if contact is None or user is None:
        return
    if contact.user_id != user.id:
        await message.answer(
            _(
                "I can only take your own number, shared with the button below; "
                "a contact of someone else is not accepted."
            ),
            reply_markup=builders.share_contact(),
        )
        return
    phone = normalise_phone(contact.phone_number, international=True)
    if phone is None:
        await message.answer(_("That does not look like a phone number."))
        return
    caller = Caller(
        telegram_id=user.id,
        name=display_name(user.first_name, user.last_name),
        username=user.username,
        language_code=user.language_code,
    )
    result = await link_by_phone(session, caller, person, phone, now=now)
    if not result.linked:
        text = (
            _("You are already on the staff of every linked portal that has this number.")
            if result.already
            else _(
                "No linked portal has {phone} on its staff. Ask your administrator to add "
                "it to your profile in Bitrix24, or for an invite link."
            ).format(phone=masked_phone(phone))
        )
        await message.answer(text, reply_markup=ReplyKeyboardRemove())
        return
    logger.info("person %s found by phone on %d portals", user.id, len(result.linked))
    await message.answer(
        **Text(
            _("Found you on the staff of: "),
            ", ".join(result.linked),
            ".",
        ).as_kwargs(),
        reply_markup=ReplyKeyboardRemove(),
    )
    await send_portal_list(message, session, result.person)


def create_router() -> Router:
    """The Bitrix24 handlers, on a router of their own for each dispatcher."""
    router = Router(name="bitrix")
    router.message.filter(F.chat.type == ChatType.PRIVATE)
    router.message.register(start_for_stranger, CommandStart(), _is_plain_start)
    # Limitation: /link in a group is answered by the groups router; it is not deleted there.
    router.message.register(link_command, Command("link"))
    router.message.register(contact_shared, F.contact)
    router.callback_query.register(sync_from_menu, PortalTap.filter(F.action == PortalAction.SYNC))
    router.callback_query.register(offer_phone, PhoneLinkTap.filter())
    router.shutdown.register(_stop_syncs)
    return router


async def _stop_syncs(syncer: sync.Syncer | None = None) -> None:
    if syncer is not None:
        await syncer.stop()
