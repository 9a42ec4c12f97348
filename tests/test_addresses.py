"""Portal addresses: one canonical host name, refusals for what is not a portal address."""

import pytest

from domain.addresses import AddressError, canonical_address, display_address, portal_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("shop.example.ru", "shop.example.ru"),
        ("https://Shop.Example.ru/", "shop.example.ru"),
        ("  SHOP.example.RU.  ", "shop.example.ru"),
        ("https://acme.bitrix24.ru/crm/deal/", "acme.bitrix24.ru"),
        ("https://acme.bitrix24.ru:443", "acme.bitrix24.ru"),
        ("портал.рф", "xn--80awhdgm.xn--p1ai"),
        ("https://Портал.РФ/", "xn--80awhdgm.xn--p1ai"),
    ],
)
def test_same_portal_whatever_the_spelling(raw: str, expected: str) -> None:
    assert canonical_address(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("http://shop.example.ru", "not_https"),
        ("ftp://shop.example.ru", "not_https"),
        ("10.0.0.1", "ip"),
        ("https://192.168.1.1/", "ip"),
        ("https://[::1]/", "ip"),
        ("https://shop.example.ru:8443/", "port"),
        ("localhost", "malformed"),
        ("shop example.ru", "malformed"),
        ("shop.example.ru/path", "malformed"),
        ("-shop.example.ru", "malformed"),
        ("https://user:pw@shop.example.ru/", "malformed"),
        ("a" * 64 + ".ru", "malformed"),
    ],
)
def test_refusals_say_why(raw: str, reason: str) -> None:
    with pytest.raises(AddressError) as caught:
        canonical_address(raw)
    assert caught.value.reason == reason


def test_shown_in_unicode_and_opened_over_https() -> None:
    host = canonical_address("портал.рф")
    assert display_address(host) == "портал.рф"
    assert display_address("shop.example.ru") == "shop.example.ru"
    assert portal_url(host) == "https://xn--80awhdgm.xn--p1ai/"
