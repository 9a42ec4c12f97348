"""Callback data: what a search's buttons can carry, and that forged data is not taken."""

import pytest

from bot.i18n import create_i18n
from bot.keyboards.builders import staff_pages
from bot.keyboards.callbacks import SearchPageTap, StaffPageTap, search_travels


def packed(markup) -> list[str]:
    return [button.callback_data for row in markup.inline_keyboard for button in row]


@pytest.mark.parametrize(
    ("text", "pages", "travels"),
    [
        ("соколов", 3, True),
        ("сотрудник отдела продаж", 3, True),
        # "sf:12:99:" takes 9 of the 64 bytes: 27 Cyrillic letters fit, 28 do not.
        ("ж" * 27, 100, True),
        ("ж" * 28, 100, False),
        # The page number grows the data, so the last page decides.
        ("ж" * 27 + "a", 100, True),
        ("ж" * 27 + "a", 1000, False),
        ("a:b", 2, False),
    ],
)
def test_a_search_travels_only_when_every_page_fits(text: str, pages: int, travels: bool) -> None:
    assert search_travels(12, pages, text) is travels
    if travels:
        data = SearchPageTap(portal_id=12, page=pages - 1, text=text).pack()
        assert len(data.encode()) <= 64
        assert SearchPageTap.unpack(data).text == text


def test_the_pager_names_the_search_by_text_or_by_id() -> None:
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale("en"):
        by_text = packed(staff_pages(12, 1, 3, search="соколов"))
        by_id = packed(staff_pages(12, 1, 3, query_id=77))
        plain = packed(staff_pages(12, 1, 3))
    assert "sf:12:0:соколов" in by_text and "sf:12:2:соколов" in by_text
    assert "sp:12:0:77" in by_id and "sp:12:2:77" in by_id
    assert "sp:12:2:0" in plain


@pytest.mark.parametrize(
    "data",
    [
        "sf:12:1",
        "sf:x:1:a",
        "sf:12:1:a:b",
        "sp:12:one:0",
        # Beyond what the database's integers hold, or below nothing.
        "sf:12:9999999999999999999:a",
        "sp:12:2147483648:0",
        "sp:99999999999999999999:0:0",
        "sf:12:-1:a",
    ],
)
def test_forged_page_data_is_not_taken(data: str) -> None:
    tap = SearchPageTap if data.startswith("sf") else StaffPageTap
    with pytest.raises((TypeError, ValueError)):
        tap.unpack(data)


def test_the_largest_numbers_the_database_holds_are_taken() -> None:
    tap = StaffPageTap.unpack(f"sp:{2**31 - 1}:{2**31 - 1}:0")
    assert tap.portal_id == tap.page == 2**31 - 1
