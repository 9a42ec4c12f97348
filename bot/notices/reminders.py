"""Notices about demos ending and branches about to be disconnected."""

from datetime import datetime
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot.notices.network import open_branch_button
from bot.notices.registry import Digest, Rendered, renders
from bot.views import clip, instant
from domain.addresses import display_address
from domain.rules import GRACE_LENGTH
from services.reminders import DEMO_REMINDER, DISCONNECT_REMINDER, why_obsolete

BUTTON_LABEL = 60


def _fill(template: str, **values: str | Text) -> Text:
    """A translated sentence with formatted parts (a bold name) in its placeholders."""
    parts: list[str | Text] = []
    for literal, field, _spec, _conversion in Formatter().parse(template):
        if literal:
            parts.append(literal)
        if field is not None:
            parts.append(values[field])
    return Text(*parts)


def _branch(params: dict[str, Any]) -> Text:
    name = clip(str(params.get("branch_name") or "?"), 200)
    address = display_address(str(params.get("branch_address") or ""))
    return Text(Bold(name), f" ({address})" if address else "")


def _moment(params: dict[str, Any], zone: ZoneInfo) -> str:
    try:
        return instant(datetime.fromisoformat(str(params.get("ends_at"))), zone)
    except ValueError:
        return "?"


def _grace_days() -> str:
    days = GRACE_LENGTH.days
    return ngettext("{count} day", "{count} days", days).format(count=days)


def _entry(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    """One branch's line in a message about several."""
    return Rendered(
        Text("• ", _branch(params), " — ", _moment(params, zone)), open_branch_button(params)
    )


# A demo ending.


def _demo_heading(count: int) -> str:
    return ngettext(
        "⏳ The demo of {count} branch is ending:",
        "⏳ The demos of {count} branches are ending:",
        count,
    ).format(count=count)


def _demo_closing(count: int) -> str:
    return _(
        "Move them to a commercial plan before their demos end to keep them in the network. "
        "A branch still on the Free plan when its demo ends will be disconnected {days} later."
    ).format(days=_grace_days())


@renders(
    DEMO_REMINDER,
    obsolete=why_obsolete,
    digest=Digest(heading=_demo_heading, entry=_entry, closing=_demo_closing, between="\n"),
)
def demo_reminder(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    return Rendered(
        Text(
            "⏳ ",
            _fill(
                _("The demo of {branch} ends on {moment}."),
                branch=_branch(params),
                moment=_moment(params, zone),
            ),
            "\n\n",
            _(
                "Move the branch to a commercial plan before then to keep it in the network. "
                "If it is still on the Free plan when its demo ends, it will be disconnected "
                "{days} later."
            ).format(days=_grace_days()),
        ),
        open_branch_button(params),
    )


# An incompatible branch about to be disconnected.


def _disconnect_heading(count: int) -> str:
    return ngettext(
        "⚠️ {count} branch will be disconnected from the network:",
        "⚠️ {count} branches will be disconnected from the network:",
        count,
    ).format(count=count)


def _disconnect_closing(count: int) -> str:
    return _(
        "They are on the Free plan. Move them to a commercial plan before those dates to keep "
        "them in the network."
    )


@renders(
    DISCONNECT_REMINDER,
    obsolete=why_obsolete,
    digest=Digest(
        heading=_disconnect_heading, entry=_entry, closing=_disconnect_closing, between="\n"
    ),
)
def disconnect_reminder(params: dict[str, Any], zone: ZoneInfo) -> Rendered:
    return Rendered(
        Text(
            "⚠️ ",
            _fill(
                _("{branch} will be disconnected from the network on {moment}."),
                branch=_branch(params),
                moment=_moment(params, zone),
            ),
            "\n\n",
            _(
                "It is on the Free plan. Move it to a commercial plan before then to keep it "
                "in the network."
            ),
        ),
        open_branch_button(params),
    )
