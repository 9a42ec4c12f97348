"""Notices about invites."""

from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import gettext as _

from bot.notices.registry import renders


@renders("invite_joined")
def invite_joined(params: dict[str, Any], zone: ZoneInfo) -> Text:
    return Text(
        Bold(str(params.get("person_name", "?"))),
        " ",
        _("joined {portal} through your invite.").format(portal=params.get("portal_name", "?")),
    )
