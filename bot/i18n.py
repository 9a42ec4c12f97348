"""Russian and English through aiogram's gettext-based i18n; message ids are the English text."""

from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from domain.language import DEFAULT_LANGUAGE, language_for
from storage.models import Person

LOCALES = Path(__file__).with_name("locales")
DOMAIN = "messages"


def create_i18n() -> I18n:
    return I18n(path=LOCALES, default_locale=DEFAULT_LANGUAGE, domain=DOMAIN)


class PersonLocaleMiddleware(I18nMiddleware):
    """The person's chosen language, else their Telegram language as the rules say."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        person: Person | None = data.get("person")
        user: User | None = data.get("event_from_user")
        chosen = person.language if person is not None else None
        return language_for(chosen, user.language_code if user is not None else None)
