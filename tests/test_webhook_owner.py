"""A Bitrix24 webhook links only the portal it belongs to."""

from pathlib import Path

import pytest

from bot.cli import main
from services.bitrix import parse_webhook, serves


def test_a_webhook_serves_only_its_own_portal() -> None:
    own = parse_webhook("https://KZN.acme.ru/rest/1/secret123/")
    assert serves(own, "kzn.acme.ru")
    assert not serves(own, "nsk.acme.ru")
    assert serves(
        parse_webhook("https://xn--80awhdgm.xn--p1ai/rest/7/secret123/"), "xn--80awhdgm.xn--p1ai"
    )
    loopback = parse_webhook("http://127.0.0.1:8080/rest/1/secret123/", allow_loopback_http=True)
    assert serves(loopback, "kzn.acme.ru")


def test_the_command_line_refuses_another_portals_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3")
    examples = Path(__file__).parents[1] / "examples" / "network.json"
    assert main(["import", str(examples)]) == 0
    capsys.readouterr()

    code = main(["portal", "link", "kzn.acme.ru", "https://nsk.acme.ru/rest/1/SECRETzz/"])

    error = capsys.readouterr().err
    assert code == 1
    assert "it is for nsk.acme.ru, not kzn.acme.ru" in error and "SECRETzz" not in error
    assert main(["audit", "--portal", "kzn.acme.ru"]) == 0
    assert "bitrix_link" not in capsys.readouterr().out
