"""The head's side of the network: /connect, /newbranch, /branches, /disconnect and /audit.

Every step re-reads the person's rights from the database through `services.network`: the ids
in a button are only a question, and a portal the person may not see gets the same answer
whether it exists or not.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.formatting import Bold, Italic, Text
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from sqlalchemy.ext.asyncio import AsyncSession

from bot import views
from bot.access import refusal_text
from bot.keyboards import network as keyboards
from bot.keyboards.callbacks import NetworkAction, NetworkTap, PortalAction, PortalTap
from bot.ui import acknowledge, show
from domain.addresses import display_address
from domain.rules import ConnectPlan, Plan, Refusal
from services import network
from services.network import BranchPage, BranchRow, Disconnected, Invalid
from services.people import my_portals
from storage.models import AuditEntry, Person, Portal

AUDIT_LIMIT = 20
REASONS_SHOWN = 20


class NewBranch(StatesGroup):
    name = State()
    address = State()


# Finding the head a command acts on.


async def heads_or_refuse(
    message: Message,
    session: AsyncSession,
    person: Person | None,
    on_head_staff: Refusal = Refusal.NOT_HEAD_ADMIN,
) -> list[Portal]:
    """The heads the person administers; otherwise they are told why not and get [].

    Someone on a head's staff who does not administer it gets `on_head_staff`, the rules'
    reason for the command; anyone else is on no head's staff and is told only head admins
    may, which names no portal.
    """
    heads = await network.heads_of(session, person.id) if person is not None else []
    if not heads:
        portals = await my_portals(session, person.id) if person is not None else []
        if not portals:
            await message.answer(**views.portal_list([], None).as_kwargs())
        elif any(portal.is_head for portal in portals):
            await message.answer(refusal_text(on_head_staff))
        else:
            await message.answer(refusal_text(Refusal.NOT_HEAD_ADMIN))
    return heads


async def head_for_tap(
    callback: CallbackQuery, session: AsyncSession, person: Person | None, head_id: int
) -> Portal | None:
    """The head a button names, if the person administers it now; otherwise they are told."""
    heads = await network.heads_of(session, person.id) if person is not None else []
    head = next((item for item in heads if item.id == head_id), None)
    if head is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
    return head


def preferred_head(heads: list[Portal], person: Person) -> Portal | None:
    """The one head, or the current portal when it is one of several; None means ask."""
    if len(heads) == 1:
        return heads[0]
    return next((head for head in heads if head.id == person.current_portal_id), None)


async def branch_of(session: AsyncSession, head: Portal, portal_id: int) -> Portal | None:
    portal = await session.get(Portal, portal_id)
    return portal if portal is not None and portal.head_id == head.id else None


# /connect


async def connect_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """/connect [address]: choose a portal to connect to the network, or name it."""
    if command.args:
        await connect_by_address(message, session, person, command.args, now, zone)
        return
    heads = await heads_or_refuse(message, session, person, Refusal.NOT_ADMIN_OF_BOTH)
    if not heads or person is None:
        return
    head = preferred_head(heads, person)
    if head is None:
        await message.answer(
            _("Which network do you connect a portal to?"),
            reply_markup=keyboards.choose_head(heads, NetworkAction.CONNECT_HEAD),
        )
        return
    await show_candidates(message, session, person, head, now)


async def connect_by_address(
    message: Message,
    session: AsyncSession,
    person: Person | None,
    address: str,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    portal = await network.portal_by_address(session, address)
    if person is None or portal is None:
        await message.answer(refusal_text(Refusal.NOT_VISIBLE))
        return

    # The head: one the person administers, else one they are on the staff of, so that the
    # rules can say exactly what is missing.
    heads = await network.heads_of(session, person.id)
    if heads:
        head = preferred_head(heads, person)
        if head is None:
            await message.answer(
                _("Which network do you connect it to?"),
                reply_markup=keyboards.choose_head_for(heads, portal.id),
            )
            return
    else:
        portals = await my_portals(session, person.id)
        member_head = next((item for item in portals if item.is_head), None)
        if member_head is None:
            visible = any(item.id == portal.id for item in portals)
            await message.answer(
                refusal_text(Refusal.NOT_HEAD_ADMIN if visible else Refusal.NOT_VISIBLE)
            )
            return
        head = await session.get(Portal, member_head.id)
        assert head is not None

    decision = await network.preview_connect(
        session, actor=person, head=head, portal=portal, now=now
    )
    if isinstance(decision, Refusal):
        await message.answer(refusal_text(decision))
        return
    await show(
        message,
        connect_question(head, portal, decision, zone),
        keyboards.confirm_connect(head.id, portal.id),
    )


async def show_candidates(
    event: Message | CallbackQuery,
    session: AsyncSession,
    person: Person,
    head: Portal,
    now: datetime,
) -> None:
    joinable, refused = await network.connect_candidates(session, person.id, head, now)
    parts: list[str | Text] = []
    if joinable:
        parts += [
            _("Which portal do you connect to the network of "),
            Bold(head.name),
            _("? These are the portals you administer that can join it."),
        ]
    else:
        parts += [_("None of your portals can join the network of "), Bold(head.name), _(" now.")]
    if refused:
        parts += ["\n\n", Italic(_("Cannot join:"))]
        for portal, refusal in refused[:REASONS_SHOWN]:
            parts += ["\n• ", Bold(views.clip(portal.name, 80)), " — ", refusal_text(refusal)]
        if len(refused) > REASONS_SHOWN:
            parts += ["\n…"]
    parts += ["\n\n", _("Or send /connect and the portal's address.")]
    markup = keyboards.connect_candidates(head.id, [portal for portal, _plan in joinable])
    await show(event, Text(*parts), markup)


def connect_question(head: Portal, portal: Portal, decision: ConnectPlan, zone: ZoneInfo) -> Text:
    plan = Plan(portal.plan)
    parts: list[str | Text] = [
        _("Connect "),
        Bold(portal.name),
        f" ({display_address(portal.address)}) ",
        _("to the network of "),
        Bold(head.name),
        "?\n\n",
        _("Plan: {plan}").format(plan=views.plan_name(plan)),
        "\n",
    ]
    if decision.demo_until is not None:
        parts.append(
            _("It is on the Free plan: a 15-day demo starts now and ends on {moment}.").format(
                moment=views.instant(decision.demo_until, zone)
            )
        )
    elif plan is Plan.ENTERPRISE:
        parts.append(_("It becomes a branch of the network, not a second head."))
    else:
        parts.append(_("It is on a commercial plan, so there is no demo."))
    parts += ["\n", _("Its administrators will be told.")]
    return Text(*parts)


async def connect_step(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """The head chosen, the portal chosen, the connection confirmed."""
    head = await head_for_tap(callback, session, person, callback_data.head_id)
    if head is None or person is None:
        return
    if callback_data.action is NetworkAction.CONNECT_HEAD:
        await show_candidates(callback, session, person, head, now)
        await acknowledge(callback)
        return

    portal = await session.get(Portal, callback_data.portal_id)
    if portal is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    if callback_data.action is NetworkAction.CONNECT_PICK:
        decision = await network.preview_connect(
            session, actor=person, head=head, portal=portal, now=now
        )
        if isinstance(decision, Refusal):
            await acknowledge(callback, refusal_text(decision), alert=True)
            return
        await show(
            callback,
            connect_question(head, portal, decision, zone),
            keyboards.confirm_connect(head.id, portal.id),
        )
        await acknowledge(callback)
        return

    result = await network.connect(session, actor=person, head=head, portal=portal, now=now)
    if isinstance(result, Refusal):
        await show(callback, Text(refusal_text(result)))
        await acknowledge(callback, refusal_text(result), alert=True)
        return
    parts: list[str | Text] = [
        "✅ ",
        Bold(portal.name),
        " ",
        _("is now a branch of the network of "),
        Bold(head.name),
        ".",
    ]
    if result.demo_until is not None:
        parts += [
            "\n",
            _("Its 15-day demo ends on {moment}.").format(
                moment=views.instant(result.demo_until, zone)
            ),
        ]
    await show(callback, Text(*parts))
    await acknowledge(callback, _("Connected."))


# /newbranch


async def new_branch_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    person: Person | None,
    state: FSMContext,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """/newbranch [name | address]: create a portal and connect it, step by step or at once."""
    await state.clear()
    heads = await heads_or_refuse(message, session, person, Refusal.NOT_ADMIN)
    if not heads or person is None:
        return

    name, address = split_new_branch(command.args or "")
    await state.update_data(name=name, address=address)
    head = preferred_head(heads, person)
    if head is None:
        await message.answer(
            _("Which network does the new portal join?"),
            reply_markup=keyboards.choose_head(heads, NetworkAction.NEW_BRANCH_HEAD),
        )
        return
    await continue_new_branch(message, session, person, state, head, now, zone)


def split_new_branch(text: str) -> tuple[str | None, str | None]:
    """`Name | address` on one line; a name alone asks for the address next."""
    if not text.strip():
        return None, None
    if "|" not in text:
        return text.strip(), None
    name, address = text.rsplit("|", 1)
    return name.strip() or None, address.strip() or None


async def new_branch_head(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
    state: FSMContext,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """The network for the new portal, chosen."""
    head = await head_for_tap(callback, session, person, callback_data.head_id)
    if head is None or person is None or not isinstance(callback.message, Message):
        return
    await acknowledge(callback)
    await continue_new_branch(callback.message, session, person, state, head, now, zone)


async def continue_new_branch(
    message: Message,
    session: AsyncSession,
    person: Person,
    state: FSMContext,
    head: Portal,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """Ask for what is still missing, or create the portal once name and address are known."""
    refusal = await network.may_create_branch(session, person, head)
    if refusal is not None:
        await state.clear()
        await message.answer(refusal_text(refusal))
        return
    await state.update_data(head_id=head.id)
    data = await state.get_data()

    name = data.get("name")
    if isinstance(name, str):
        cleaned = network.clean_name(name)
        if isinstance(cleaned, Invalid):
            await state.update_data(name=None)
            await state.set_state(NewBranch.name)
            await message.answer(invalid_text(cleaned) + "\n" + _("Send it again, or /cancel."))
            return
    if not isinstance(name, str):
        await state.set_state(NewBranch.name)
        await message.answer(
            **Text(
                _("A new branch of "),
                Bold(head.name),
                ".\n",
                _("What is the new portal called? (/cancel to stop)"),
            ).as_kwargs()
        )
        return

    address = data.get("address")
    if not isinstance(address, str):
        await state.set_state(NewBranch.address)
        await message.answer(
            _("Its address? For example, shop.example.ru or https://shop.example.ru/")
        )
        return
    await finish_new_branch(message, session, person, state, head, name, address, now, zone)


async def new_branch_name(
    message: Message,
    session: AsyncSession,
    person: Person | None,
    state: FSMContext,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """The new portal's name."""
    head = await head_in_dialog(message, session, person, state)
    if head is None or person is None:
        return
    await state.update_data(name=message.text or "")
    await continue_new_branch(message, session, person, state, head, now, zone)


async def new_branch_address(
    message: Message,
    session: AsyncSession,
    person: Person | None,
    state: FSMContext,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """The new portal's address."""
    head = await head_in_dialog(message, session, person, state)
    if head is None or person is None:
        return
    await state.update_data(address=message.text or "")
    await continue_new_branch(message, session, person, state, head, now, zone)


async def new_branch_not_text(message: Message) -> None:
    """Anything but text in the dialog."""
    await message.answer(_("Please send it as text, or /cancel."))


async def head_in_dialog(
    message: Message, session: AsyncSession, person: Person | None, state: FSMContext
) -> Portal | None:
    data = await state.get_data()
    head_id = data.get("head_id")
    heads = await network.heads_of(session, person.id) if person is not None else []
    head = next((item for item in heads if item.id == head_id), None)
    if head is None:
        await state.clear()
        await message.answer(refusal_text(Refusal.NOT_HEAD_ADMIN))
    return head


async def finish_new_branch(
    message: Message,
    session: AsyncSession,
    person: Person,
    state: FSMContext,
    head: Portal,
    name: str,
    address: str,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    result = await network.create_branch(
        session, actor=person, head=head, name=name, address=address, now=now
    )
    if isinstance(result, Refusal):
        await state.clear()
        await message.answer(refusal_text(result))
        return
    if isinstance(result, Invalid):
        # Ask again for what was wrong, keeping what was right.
        await state.update_data(**{result.field: None})
        await state.set_state(NewBranch.name if result.field == "name" else NewBranch.address)
        await message.answer(invalid_text(result) + "\n" + _("Send it again, or /cancel."))
        return

    await state.clear()
    assert result.demo_until is not None
    await message.answer(
        **Text(
            "✅ ",
            Bold(result.name),
            f" ({display_address(result.address)}) ",
            _("is created and connected to the network of "),
            Bold(head.name),
            ".\n",
            _("It is on the Free plan with a 15-day demo until {moment}.").format(
                moment=views.instant(result.demo_until, zone)
            ),
            "\n",
            _("You are its administrator: /invite brings its staff in."),
        ).as_kwargs(),
        reply_markup=keyboards.new_branch_made(result.id),
    )


def invalid_text(problem: Invalid) -> str:
    texts = {
        ("name", "empty"): _("The name cannot be empty."),
        ("name", "too_long"): _("The name is too long: at most 200 characters."),
        ("address", "empty"): _("The address is empty."),
        ("address", "not_https"): _("Give the address as a host name or an https:// address."),
        ("address", "port"): _("The address must not have a port."),
        ("address", "ip"): _("The address must be a host name, not an IP address."),
        ("address", "malformed"): _("That is not a portal address."),
        ("address", "taken"): _("A portal with that address already exists."),
    }
    return texts.get((problem.field, problem.reason), _("That is not a portal address."))


# /branches and a branch's card


async def branches_command(
    message: Message, session: AsyncSession, person: Person | None, now: datetime, zone: ZoneInfo
) -> None:
    """/branches: every branch of the network, with plan, demo and compatibility."""
    heads = await heads_or_refuse(message, session, person)
    if not heads or person is None:
        return
    head = preferred_head(heads, person)
    if head is None:
        await message.answer(
            _("Which network?"), reply_markup=keyboards.choose_head(heads, NetworkAction.BRANCHES)
        )
        return
    await show_branches(message, session, head, 0, now, zone, to_disconnect=False)


async def disconnect_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """/disconnect [address]: choose a branch to disconnect, or name it."""
    if command.args:
        portal = await network.portal_by_address(session, command.args)
        await ask_disconnect(message, session, person, portal, None)
        return

    heads = await heads_or_refuse(message, session, person)
    if not heads or person is None:
        return
    head = preferred_head(heads, person)
    if head is None:
        await message.answer(
            _("Which network?"),
            reply_markup=keyboards.choose_head(heads, NetworkAction.DISCONNECT_LIST),
        )
        return
    await show_branches(message, session, head, 0, now, zone, to_disconnect=True)


async def show_branches(
    event: Message | CallbackQuery,
    session: AsyncSession,
    head: Portal,
    page: int,
    now: datetime,
    zone: ZoneInfo,
    *,
    to_disconnect: bool,
) -> None:
    listing = await network.list_branches(session, head.id, page)
    await show(
        event,
        branches_text(head, listing, now, zone, to_disconnect=to_disconnect),
        keyboards.branches_page(
            head.id, listing.rows, listing.page, listing.pages, to_disconnect=to_disconnect
        ),
    )


def branches_text(
    head: Portal, listing: BranchPage, now: datetime, zone: ZoneInfo, *, to_disconnect: bool
) -> Text:
    header: list[str | Text] = [
        _("Branches of "),
        Bold(head.name),
        " · ",
        ngettext("{count} branch", "{count} branches", listing.total).format(count=listing.total),
    ]
    if listing.pages > 1:
        header.append(
            " · " + _("page {page} of {pages}").format(page=listing.page + 1, pages=listing.pages)
        )
    if not listing.rows:
        return Text(*header, "\n\n", _("No branches yet: /connect or /newbranch adds one."))

    lines: list[str | Text] = []
    for number, row in enumerate(listing.rows, start=listing.offset + 1):
        lines += ["\n\n", f"{number}. ", branch_summary(row, now, zone)]
    hint = (
        _("Tap the branch to disconnect.")
        if to_disconnect
        else _("Tap a branch to open its card.")
    )
    return Text(*header, *lines, "\n\n", hint)


def branch_summary(row: BranchRow, now: datetime, zone: ZoneInfo) -> Text:
    """Name, address, plan, demo and compatibility: what a head's admins may see of a branch."""
    mark = "⚠️ " if row.incompatible_until is not None else "🏢 "
    parts: list[str | Text] = [
        mark,
        Bold(views.clip(row.name, 100)),
        "\n    ",
        views.clip(display_address(row.address), 100),
        " · ",
        views.plan_name(row.plan),
    ]
    if row.incompatible_until is not None:
        parts += [
            "\n    ⚠️ ",
            _("Not compatible: disconnected on {moment} ({left})").format(
                moment=views.instant(row.incompatible_until, zone),
                left=days_left(row.incompatible_until, now),
            ),
        ]
    elif row.demo_until is not None:
        if row.demo_until > now:
            parts += [
                "\n    ",
                _("Demo until {moment} ({left})").format(
                    moment=views.instant(row.demo_until, zone),
                    left=days_left(row.demo_until, now),
                ),
            ]
        else:
            parts += [
                "\n    ",
                _("Demo ended on {moment}").format(moment=views.instant(row.demo_until, zone)),
            ]
    return Text(*parts)


def days_left(moment: datetime, now: datetime) -> str:
    """Whole days until the moment, rounded up, as people count what is left."""
    seconds = (moment - now).total_seconds()
    days = max(0, -(-int(seconds) // 86400))
    if days == 0:
        return _("less than a day left")
    return ngettext("{count} day left", "{count} days left", days).format(count=days)


async def branches_step(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """A page of the branches, or one branch's card."""
    head = await head_for_tap(callback, session, person, callback_data.head_id)
    if head is None:
        return
    if callback_data.action is NetworkAction.BRANCH:
        branch = await branch_of(session, head, callback_data.portal_id)
        if branch is None:
            await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
            return
        await show(
            callback,
            Text(branch_summary(network.branch_row(branch), now, zone)),
            keyboards.branch_card(head.id, branch.id, callback_data.page),
        )
    else:
        to_disconnect = callback_data.action is NetworkAction.DISCONNECT_LIST
        await show_branches(
            callback, session, head, callback_data.page, now, zone, to_disconnect=to_disconnect
        )
    await acknowledge(callback)


# Disconnecting


def disconnect_question(branch: Portal) -> Text:
    return Text(
        _("Disconnect "),
        Bold(branch.name),
        f" ({display_address(branch.address)}) ",
        _("from the network?"),
        "\n\n",
        _(
            "It becomes a standalone portal. Its administrators and the head portal's "
            "administrators will be told."
        ),
    )


async def disconnect_from_menu(
    callback: CallbackQuery, callback_data: PortalTap, session: AsyncSession, person: Person | None
) -> None:
    """The disconnect item of the branch menu: the confirmation."""
    portal = await session.get(Portal, callback_data.portal_id)
    await ask_disconnect(callback, session, person, portal, None)


async def disconnect_chosen(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
) -> None:
    """A branch chosen from the list: the confirmation."""
    portal = await session.get(Portal, callback_data.portal_id)
    await ask_disconnect(callback, session, person, portal, callback_data.head_id)


async def ask_disconnect(
    event: Message | CallbackQuery,
    session: AsyncSession,
    person: Person | None,
    portal: Portal | None,
    head_id: int | None,
) -> None:
    """The confirmation naming the branch, or why not, or that it is done already."""
    allowed: bool | Refusal = Refusal.NOT_VISIBLE
    if person is not None and portal is not None:
        allowed = await network.preview_disconnect(
            session, actor=person, branch=portal, head_id=head_id
        )
    if isinstance(allowed, Refusal) or portal is None:
        refusal = allowed if isinstance(allowed, Refusal) else Refusal.NOT_VISIBLE
        if isinstance(event, CallbackQuery):
            await acknowledge(event, refusal_text(refusal), alert=True)
        else:
            await event.answer(refusal_text(refusal))
        return
    if not allowed:
        await show(
            event, Text(Bold(portal.name), " ", _("was already disconnected from the network."))
        )
    else:
        assert portal.head_id is not None
        await show(
            event,
            disconnect_question(portal),
            keyboards.confirm_disconnect(portal.head_id, portal.id),
        )
    if isinstance(event, CallbackQuery):
        await acknowledge(event)


async def disconnect_confirmed(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
    now: datetime,
) -> None:
    """The disconnect, confirmed: done once, however many admins confirm."""
    portal = await session.get(Portal, callback_data.portal_id)
    if person is None or portal is None:
        await acknowledge(callback, refusal_text(Refusal.NOT_VISIBLE), alert=True)
        return
    result = await network.disconnect(
        session,
        branch=portal,
        actor=person,
        now=now,
        reason=network.BY_HAND,
        head_id=callback_data.head_id,
    )
    if isinstance(result, Refusal):
        await acknowledge(callback, refusal_text(result), alert=True)
        return
    await show(callback, disconnected_text(result))
    await acknowledge(callback, _("Already done.") if result.already else _("Disconnected."))


def disconnected_text(result: Disconnected) -> Text:
    if result.already:
        return Text(Bold(result.branch.name), " ", _("was already disconnected from the network."))
    return Text(
        "⛔ ",
        Bold(result.branch.name),
        " ",
        _("is disconnected from the network: it is a standalone portal now."),
        "\n",
        _("Its administrators and the head portal's administrators are told."),
    )


async def network_cancelled(callback: CallbackQuery) -> None:
    """Cancel on a confirmation: nothing changes."""
    await show(callback, Text(_("Cancelled. Nothing has changed.")))
    await acknowledge(callback)


# /audit


async def audit_command(
    message: Message, session: AsyncSession, person: Person | None, zone: ZoneInfo
) -> None:
    """/audit: the latest entries of the network's log."""
    heads = await heads_or_refuse(message, session, person)
    if not heads or person is None:
        return
    head = preferred_head(heads, person)
    if head is None:
        await message.answer(
            _("Which network?"), reply_markup=keyboards.choose_head(heads, NetworkAction.AUDIT)
        )
        return
    await show(message, await audit_text(session, head, zone))


async def audit_tap(
    callback: CallbackQuery,
    callback_data: NetworkTap,
    session: AsyncSession,
    person: Person | None,
    zone: ZoneInfo,
) -> None:
    """The log of the network chosen."""
    head = await head_for_tap(callback, session, person, callback_data.head_id)
    if head is None:
        return
    await show(callback, await audit_text(session, head, zone))
    await acknowledge(callback)


async def audit_text(session: AsyncSession, head: Portal, zone: ZoneInfo) -> Text:
    entries = await network.network_audit(session, head.id, AUDIT_LIMIT)
    header: list[str | Text] = [_("Latest in the log of the network of "), Bold(head.name)]
    if not entries:
        return Text(*header, "\n\n", _("Nothing yet."))
    lines: list[str | Text] = []
    used = 0
    for entry in entries:
        line = audit_line(entry, zone)
        # Newest first: what does not fit below Telegram's limit is the oldest.
        used += views.utf16_length(line.as_kwargs()["text"]) + 2
        if used > views.PAGE_BUDGET:
            break
        lines += ["\n\n", line]
    return Text(*header, *lines)


def audit_line(entry: AuditEntry, zone: ZoneInfo) -> Text:
    actions = {
        "connect": _("connected"),
        "disconnect": _("disconnected"),
        "create": _("created and connected"),
        "plan": _("plan changed"),
        "incompatible": _("became incompatible"),
        "compatible": _("compatible again"),
        "invite": _("invite made"),
        "revoke": _("invite revoked"),
        "join": _("joined"),
        "remove": _("removed from the staff"),
        "make_admin": _("made an administrator"),
        "make_employee": _("made an employee"),
        "unlink": _("Telegram account unlinked"),
    }
    outcomes = {
        "ok": "",
        "refused": " · " + _("refused"),
        "already": " · " + _("already done"),
        "unchanged": " · " + _("nothing to change"),
    }
    address = views.clip(display_address(entry.portal_address or "—"), 80)
    return Text(
        views.instant(entry.at, zone),
        "\n",
        Bold(views.clip(entry.actor, 100)),
        " · ",
        actions.get(entry.action, entry.action),
        " · ",
        address,
        outcomes.get(entry.outcome, " · " + entry.outcome),
    )


def create_router() -> Router:
    """The network handlers, on a router of their own for each dispatcher."""
    router = Router(name="network")
    router.message.filter(F.chat.type == ChatType.PRIVATE)
    router.message.register(connect_command, Command("connect"))
    router.callback_query.register(
        connect_step,
        NetworkTap.filter(
            F.action.in_(
                {
                    NetworkAction.CONNECT_HEAD,
                    NetworkAction.CONNECT_PICK,
                    NetworkAction.CONNECT_CONFIRM,
                }
            )
        ),
    )
    router.message.register(new_branch_command, Command("newbranch"))
    router.callback_query.register(
        new_branch_head, NetworkTap.filter(F.action == NetworkAction.NEW_BRANCH_HEAD)
    )
    router.message.register(new_branch_name, NewBranch.name, F.text, ~F.text.startswith("/"))
    router.message.register(new_branch_address, NewBranch.address, F.text, ~F.text.startswith("/"))
    router.message.register(new_branch_not_text, StateFilter(NewBranch), ~F.text)
    router.message.register(branches_command, Command("branches"))
    router.message.register(disconnect_command, Command("disconnect"))
    router.callback_query.register(
        branches_step,
        NetworkTap.filter(
            F.action.in_(
                {NetworkAction.BRANCHES, NetworkAction.DISCONNECT_LIST, NetworkAction.BRANCH}
            )
        ),
    )
    router.callback_query.register(
        disconnect_from_menu, PortalTap.filter(F.action == PortalAction.DISCONNECT)
    )
    router.callback_query.register(
        disconnect_chosen, NetworkTap.filter(F.action == NetworkAction.DISCONNECT_ASK)
    )
    router.callback_query.register(
        disconnect_confirmed, NetworkTap.filter(F.action == NetworkAction.DISCONNECT_CONFIRM)
    )
    router.callback_query.register(
        network_cancelled, NetworkTap.filter(F.action == NetworkAction.CANCEL)
    )
    router.message.register(audit_command, Command("audit"))
    router.callback_query.register(audit_tap, NetworkTap.filter(F.action == NetworkAction.AUDIT))
    return router
