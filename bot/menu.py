"""The commands people see: the menu Telegram shows, and /help for each person."""

from aiogram import Bot
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.access import heads_administered, is_admin_somewhere
from domain.language import DEFAULT_LANGUAGE, LANGUAGES
from services.people import MyPortal


def everyone_commands() -> list[tuple[str, str]]:
    return [
        ("portals", _("my portals")),
        ("staff", _("staff of the current portal; add text to search")),
        ("structure", _("departments of the current portal")),
        ("invite", _("invite people (administrators)")),
        ("language", _("Russian or English")),
        ("cancel", _("stop what is in progress")),
        ("help", _("what I can do")),
    ]


def help_lines(portals: list[MyPortal]) -> list[str]:
    """What this person may do, one line a command."""
    lines = ["/start — " + _("greeting and your portals"), "/portals — " + _("my portals")]
    if portals:
        lines += [
            "/staff — " + _("staff of the current portal"),
            "/staff " + _("text") + " — " + _("find people by part of the name"),
            "/structure — " + _("departments of the current portal"),
        ]
    if is_admin_somewhere(portals):
        lines.append("/invite — " + _("an invite link to your portal; open invites"))
        lines.append("/members — " + _("roles, removal and Telegram links of your staff"))
    if heads_administered(portals):
        lines += [
            "/connect — " + _("connect a portal to your network as a branch"),
            "/newbranch — " + _("create a new portal and connect it"),
            "/branches — " + _("all branches of your network"),
            "/disconnect — " + _("disconnect a branch"),
            "/audit — " + _("the latest in your network's log"),
        ]
    lines += [
        "/language — " + _("Russian or English"),
        "/cancel — " + _("stop what is in progress"),
        "/help — " + _("this list"),
    ]
    return lines


async def register_commands(bot: Bot, i18n: I18n) -> None:
    """The command menu in Russian (the default) and English."""
    for language in LANGUAGES:
        with i18n.context(), i18n.use_locale(language):
            commands = [
                BotCommand(command=name, description=description)
                for name, description in everyone_commands()
            ]
        await bot.set_my_commands(commands, language_code=language)
        if language == DEFAULT_LANGUAGE:
            await bot.set_my_commands(commands)
