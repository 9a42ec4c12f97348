"""Notices about connecting and disconnecting branches and plan changes."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton
from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import gettext as _

from bot.keyboards.callbacks import NetworkAction, NetworkTap, PortalAction, PortalTap
from bot.notices.registry import Rendered, renders
from bot.views import clip, instant, plan_name
from domain.addresses import display_address
from domain.rules import Plan
from services.network import why_incompatible_obsolete

BUTTON_LABEL = 60


def _branch(params: dict[str, Any]) -> Text:
    name = clip(str(params.get("branch_name") or "?"), 200)
    address = display_address(str(params.get("branch_address") or ""))
    return Text(Bold(name), f" ({address})" if address else "")


def _moment(params: dict[str, Any], key: str, zone: ZoneInfo) -> str | None:
    value = params.get(key)
    if not isinstance(value, str):
        return None
    try:
        return instant(datetime.fromisoformat(value), zone)
    except ValueError:
        return None


def open_branch_button(params: dict[str, Any]) -> tuple[InlineKeyboardButton, ...]:
    """The branch's menu; a head's admin off the branch's staff gets its card in the network."""
    try:
        branch_id = int(params["branch_id"])
        head_id = int(params["head_id"])
    except (KeyError, TypeError, ValueError):
        return ()
    name = clip(str(params.get("branch_name") or "?"), BUTTON_LABEL)
    if params.get("on_branch_staff", True):
        data = PortalTap(action=PortalAction.MENU, portal_id=branch_id).pack()
    else:
        data = NetworkTap(action=NetworkAction.BRANCH, head_id=head_id, portal_id=branch_id).pack()
    return (InlineKeyboardButton(text=f"🏢 {name}", callback_data=data),)


def _plan(params: dict[str, Any]) -> str:
    try:
        return plan_name(Plan(str(params.get("plan"))))
    except ValueError:
        return str(params.get("plan") or "?")


@renders("branch_connected")
def branch_connected(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    head_name = params.get("head_name")
    parts: list[str | Text] = [_branch(params), " "]
    if head_name:
        parts += [_("is now a branch of the network of "), Bold(str(head_name)), "."]
    else:
        parts.append(_("is now a branch of a network."))
    actor = params.get("actor_name")
    if actor:
        parts += ["\n", _("Connected by {name}.").format(name=actor)]
    parts += ["\n", _("Plan: {plan}").format(plan=_plan(params))]
    demo_until = _moment(params, "demo_until", zone)
    if demo_until is not None:
        parts += [
            "\n",
            _("A 15-day demo has started; it ends on {moment}.").format(moment=demo_until),
        ]
    return Rendered(Text(*parts), open_branch_button(params))


@renders("branch_disconnected")
def branch_disconnected(params: dict[str, Any], zone: ZoneInfo) -> Text:
    head_name = params.get("head_name")
    parts: list[str | Text] = ["⛔ ", _branch(params), " "]
    if head_name:
        parts += [_("was disconnected from the network of "), Bold(str(head_name)), "."]
    else:
        parts.append(_("was disconnected from its network."))
    if params.get("automatic"):
        parts += [
            "\n",
            _("It did not move to a commercial plan within the 15 days it had."),
        ]
    elif params.get("actor_name"):
        parts += ["\n", _("Disconnected by {name}.").format(name=params["actor_name"])]
    else:
        parts += ["\n", _("Disconnected by an administrator of the head portal.")]
    parts += ["\n", _("It is a standalone portal now.")]
    return Text(*parts)


@renders("branch_incompatible", obsolete=why_incompatible_obsolete)
def branch_incompatible(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    until = _moment(params, "incompatible_until", zone) or "?"
    if params.get("reason") == "demo ended":
        why = _("Its demo has ended and it is still on the Free plan.")
    else:
        why = _("It has moved to the Free plan.")
    text = Text(
        "⚠️ ",
        _branch(params),
        " ",
        _("is not compatible with the network."),
        "\n",
        why,
        "\n",
        _("Unless it moves to a commercial plan, it will be disconnected on {moment}.").format(
            moment=until
        ),
    )
    return Rendered(text, open_branch_button(params))


@renders("branch_compatible")
def branch_compatible(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    text = Text(
        "✅ ",
        _branch(params),
        " ",
        _("is compatible with the network again: it is on the {plan} plan now.").format(
            plan=_plan(params)
        ),
    )
    return Rendered(text, open_branch_button(params))
