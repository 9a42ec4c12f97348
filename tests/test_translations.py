"""The Russian catalogue covers every text in the code, and the compiled file is current."""

import gettext
import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

BOT = Path(__file__).parents[1] / "bot"
PO = BOT / "locales" / "ru" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def code_messages() -> set[str | tuple[str, ...]]:
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        BOT, method_map=[("**.py", "python")], keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def catalogue() -> dict[str | tuple[str, ...], str | tuple[str, ...]]:
    with PO.open("rb") as file:
        return {message.id: message.string for message in read_po(file, locale="ru") if message.id}


def test_every_text_has_a_russian_translation() -> None:
    translations = catalogue()
    missing = [
        message
        for message in code_messages()
        if not translations.get(message)
        or (isinstance(translations[message], tuple) and not all(translations[message]))
    ]
    assert missing == []


def test_no_translation_is_left_over_from_removed_texts() -> None:
    assert set(catalogue()) - code_messages() == set()


def test_translations_keep_their_placeholders() -> None:
    for message, translation in catalogue().items():
        source = message if isinstance(message, str) else message[0]
        forms = translation if isinstance(translation, tuple) else (translation,)
        for form in forms:
            assert set(PLACEHOLDER.findall(form)) == set(PLACEHOLDER.findall(source)), message


def test_the_compiled_catalogue_matches_the_source() -> None:
    with PO.with_suffix(".mo").open("rb") as file:
        compiled = gettext.GNUTranslations(file)
    for message, translation in catalogue().items():
        if isinstance(message, str):
            assert compiled.gettext(message) == translation
        else:
            assert isinstance(translation, tuple)
            for count, form in ((1, 0), (3, 1), (5, 2), (21, 0)):
                assert compiled.ngettext(message[0], message[1], count) == translation[form]
