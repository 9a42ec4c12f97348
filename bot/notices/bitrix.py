"""Notices about a portal's link to its Bitrix24: a run of failed syncs starts, or ends."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.formatting import Bold, Text
from aiogram.utils.i18n import gettext as _
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.notices.registry import renders
from domain.addresses import display_address
from services.bitrix import FailureKind
from services.sync import FAILED_NOTICE, FAILING, RECOVERED_NOTICE
from storage.models import PortalLink


def failure_text(kind: str | None) -> str:
    """Why a sync failed, in the reader's language."""
    texts = {
        FailureKind.REVOKED: _(
            "Bitrix24 refused the webhook: it was deleted, or its user lost the rights."
        ),
        FailureKind.EXPIRED: _("Bitrix24 says the access token has expired."),
        FailureKind.REST_CLOSED: _(
            "Bitrix24 has closed REST access to this portal (the Free plan has none)."
        ),
        FailureKind.NO_SCOPE: _("The webhook lacks the rights to read users and departments."),
        FailureKind.RATE_LIMITED: _("Bitrix24 kept refusing requests for its rate limit."),
        FailureKind.UNAVAILABLE: _("Bitrix24 kept answering with server errors."),
        FailureKind.UNREACHABLE: _("The portal could not be reached over the network."),
        FailureKind.MALFORMED: _("Bitrix24 gave an answer that could not be read."),
        FailureKind.REFUSED: _("Bitrix24 refused the request."),
    }
    try:
        return texts[FailureKind(str(kind))]
    except ValueError:
        return texts[FailureKind.REFUSED]


def _portal(params: dict[str, Any]) -> Text:
    name = str(params.get("portal_name") or "?")
    address = display_address(str(params.get("portal_address") or ""))
    return Text(Bold(name), f" ({address})" if address else "")


async def _failure_over(
    session: AsyncSession, person_id: int, params: dict[str, Any], now: datetime
) -> str | None:
    """A failure notice still waiting when the link recovered (or went) is not sent."""
    link = await session.scalar(
        select(PortalLink).where(PortalLink.portal_id == params.get("portal_id"))
    )
    if link is None:
        return "the portal is no longer linked"
    if link.status != FAILING:
        return "the sync works again"
    return None


@renders(FAILED_NOTICE, obsolete=_failure_over)
def sync_failed(params: dict[str, Any], zone: ZoneInfo) -> Text:
    return Text(
        "⚠️ ",
        _("The staff and structure of "),
        _portal(params),
        " ",
        _("can no longer be synced from Bitrix24."),
        "\n",
        failure_text(params.get("reason")),
        "\n\n",
        _("They stay as the last sync left them. Link a new webhook with /link if needed."),
    )


@renders(RECOVERED_NOTICE)
def sync_recovered(params: dict[str, Any], zone: ZoneInfo) -> Text:
    return Text(
        "✅ ",
        _("The staff and structure of "),
        _portal(params),
        " ",
        _("are synced from Bitrix24 again."),
    )
