"""Which language a person is answered in."""

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"


def language_for(chosen: str | None, telegram_code: str | None) -> str:
    """The chosen language wins; else English for Telegram languages starting with `en`."""
    if chosen in LANGUAGES:
        return chosen
    if telegram_code and telegram_code.lower().startswith("en"):
        return "en"
    return DEFAULT_LANGUAGE
