"""Tests of the local Bot API stand-in, driven through a real aiogram Bot over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
    CopyTextButton,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from tests.botapi import (
    TEST_TOKEN,
    EntityParseError,
    FakeBotAPI,
    FakeUser,
    check_request,
    parse_html,
    utf16_len,
)
from tests.botapi import plugin as botapi_plugin
from tests.botapi.plugin import make_bot

# The fixture comes from the plugin; taking it here keeps this module runnable on its own.
bot_api = botapi_plugin.bot_api


@pytest_asyncio.fixture
async def bot(bot_api: FakeBotAPI) -> AsyncIterator[Bot]:
    instance = make_bot(bot_api)
    try:
        yield instance
    finally:
        await instance.session.close()


@pytest_asyncio.fixture
async def alice(bot_api: FakeBotAPI) -> FakeUser:
    person = bot_api.user(1001, "Alice", last_name="Liddell", username="alice")
    await bot_api.send(person, "hello")
    return person


def expect_violation(api: FakeBotAPI, fragment: str) -> None:
    """The request was also recorded as a violation; clear it so teardown stays quiet."""
    assert any(fragment in v for v in api.violations), api.violations
    api.violations.clear()


def keyboard(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=list(rows))


def callback(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data)


# -- sending and text rules -----------------------------------------------------------------


async def test_get_me_answers_as_the_configured_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.username == "branchbot_test_bot"
    assert me.id == 123456
    assert me.is_bot


async def test_send_message_keeps_exact_plain_text(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    html = (
        "<b>Tom &amp; Jerry</b> &lt;3 &#128512; <a href='https://example.com/?a=1&amp;b=2'>x</a>"
    )
    message = await bot.send_message(alice.id, html, parse_mode="HTML")

    assert message.text == "Tom & Jerry <3 😀 x"
    stored = bot_api.last(alice.id)
    assert stored.text == "Tom & Jerry <3 😀 x"
    assert stored.html == html
    assert stored.parse_mode == "HTML"
    assert stored.entity_texts("bold") == ["Tom & Jerry"]
    link = next(e for e in stored.entities if e["type"] == "text_link")
    assert link["url"] == "https://example.com/?a=1&b=2"
    # The emoji is two UTF-16 units, so the link starts at 18, not 17.
    assert link["offset"] == 18
    assert message.entities is not None and message.entities[0].type == "bold"


async def test_text_is_trimmed_and_cleaned_like_telegram(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    message = await bot.send_message(alice.id, "\n  line one\r\n\tline two  \n")
    assert message.text == "line one\n line two"
    assert bot_api.last(alice).text == "line one\n line two"


async def test_text_longer_than_4096_utf16_units_is_refused(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    fits = "😀" * 2048
    assert utf16_len(fits) == 4096
    await bot.send_message(alice.id, fits)

    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(alice.id, fits + "a")
    expect_violation(bot_api, "4097 UTF-16 code units")


async def test_empty_text_after_parsing_is_refused(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(alice.id, "<b> </b>\n", parse_mode="HTML")
    expect_violation(bot_api, "is empty")


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<br>", 'Unsupported start tag "br" at byte offset 0'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_invalid_html_is_refused(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser, html: str, error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as raised:
        await bot.send_message(alice.id, html, parse_mode="HTML")
    assert raised.value.message == f"Bad Request: can't parse entities: {error}"
    expect_violation(bot_api, "invalid HTML")


async def test_markdown_is_not_simulated_and_says_so(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(alice.id, "*bold*", parse_mode="MarkdownV2")
    expect_violation(bot_api, "MarkdownV2 is not implemented")


# -- raw HTTP --------------------------------------------------------------------------------


async def _raw_post(
    api: FakeBotAPI, method: str, body: dict[str, Any], token: str = TEST_TOKEN
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{api.base_url}/bot{token}/{method}", json=body) as response,
    ):
        return response.status, await response.json()


async def test_unknown_parameter_is_refused(bot_api: FakeBotAPI, alice: FakeUser) -> None:
    status, body = await _raw_post(
        bot_api, "sendMessage", {"chat_id": alice.id, "text": "hi", "colour": "red"}
    )
    assert status == 400
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": 'Bad Request: unknown parameter "colour"',
    }
    expect_violation(bot_api, "unknown parameter 'colour'")


async def test_wrong_token_and_unknown_method(bot_api: FakeBotAPI) -> None:
    status, body = await _raw_post(bot_api, "getMe", {}, token="1:wrong")
    assert (status, body["description"]) == (401, "Unauthorized")
    expect_violation(bot_api, "wrong bot token")

    status, body = await _raw_post(bot_api, "sendTelepathy", {})
    assert (status, body["description"]) == (404, "Not Found")
    expect_violation(bot_api, "unknown method 'sendTelepathy'")


async def test_method_names_ignore_case_and_json_bodies_work(
    bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    status, body = await _raw_post(bot_api, "SENDMESSAGE", {"chat_id": alice.id, "text": "hi"})
    assert status == 200
    assert body["ok"] is True
    assert body["result"]["text"] == "hi"
    assert body["result"]["from"]["is_bot"] is True


async def test_form_encoded_requests_and_unsimulated_methods(
    bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    markup = '{"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}'
    form = {"chat_id": str(alice.id), "text": "&lt;hi&gt;", "parse_mode": "HTML"}
    async with aiohttp.ClientSession() as session:
        url = f"{bot_api.base_url}/bot{TEST_TOKEN}/sendMessage"
        async with session.post(url, data={**form, "reply_markup": markup}) as response:
            body = await response.json()
        async with session.post(url, data={**form, "reply_markup": "{oops"}) as response:
            broken = await response.json()
        pin = f"{bot_api.base_url}/bot{TEST_TOKEN}/pinChatMessage"
        async with session.post(pin, data={"chat_id": alice.id, "message_id": 1}) as response:
            pinned = await response.json()
    assert body["result"]["text"] == "<hi>"
    assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a"
    assert broken["description"] == "Bad Request: can't parse reply keyboard markup JSON object"
    expect_violation(bot_api, "not valid JSON")
    assert pinned == {"ok": True, "result": True}
    assert [call.method for call in bot_api.unimplemented] == ["pinChatMessage"]
    method, params, _ = bot_api.calls[-1]
    assert (method, params) == ("pinChatMessage", {"chat_id": alice.id, "message_id": 1})


# -- inline keyboards ------------------------------------------------------------------------


async def test_callback_data_is_limited_to_64_bytes(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    fits = "я" * 32  # Cyrillic letters take two bytes each
    await bot.send_message(alice.id, "ok", reply_markup=keyboard([callback("A", fits)]))

    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(alice.id, "no", reply_markup=keyboard([callback("A", fits + "a")]))
    expect_violation(bot_api, "callback_data is 65 bytes")


async def test_copy_text_is_limited_to_256_characters(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    def copy(length: int) -> InlineKeyboardMarkup:
        button = InlineKeyboardButton(text="Copy", copy_text=CopyTextButton(text="x" * length))
        return keyboard([button])

    await bot.send_message(alice.id, "ok", reply_markup=copy(256))
    with pytest.raises(TelegramBadRequest, match="BUTTON_COPY_TEXT_INVALID"):
        await bot.send_message(alice.id, "no", reply_markup=copy(257))
    expect_violation(bot_api, "copy_text is 257 characters")


async def test_at_most_8_buttons_in_a_row(bot: Bot, bot_api: FakeBotAPI, alice: FakeUser) -> None:
    row = [callback(str(i), f"b{i}") for i in range(9)]
    await bot.send_message(alice.id, "ok", reply_markup=keyboard(row[:8]))

    with pytest.raises(TelegramBadRequest, match="reply markup is too long"):
        await bot.send_message(alice.id, "no", reply_markup=keyboard(row))
    expect_violation(bot_api, "has 9 buttons")


async def test_at_most_100_buttons(bot: Bot, bot_api: FakeBotAPI, alice: FakeUser) -> None:
    rows = [[callback(f"{r}.{c}", f"{r}.{c}") for c in range(5)] for r in range(21)]
    with pytest.raises(TelegramBadRequest, match="reply markup is too long"):
        await bot.send_message(alice.id, "no", reply_markup=keyboard(*rows))
    expect_violation(bot_api, "105 buttons")


@pytest.mark.parametrize(
    ("button", "error"),
    [
        (InlineKeyboardButton(text="Site", url="example.com"), "BUTTON_URL_INVALID"),
        (InlineKeyboardButton(text="Mail", url="mailto:a@b.c"), "BUTTON_URL_INVALID"),
        (
            InlineKeyboardButton(text="Go", url="https://t.me/branchbot_test_bot?start=a%20b"),
            "START_PARAM_INVALID",
        ),
        (
            InlineKeyboardButton(
                text="Go", url=f"https://t.me/branchbot_test_bot?start={'a' * 65}"
            ),
            "START_PARAM_INVALID",
        ),
        (InlineKeyboardButton(text="Label"), "Text buttons are unallowed"),
        (InlineKeyboardButton(text="Empty", callback_data=""), "Text buttons are unallowed"),
        (
            InlineKeyboardButton(text="Both", callback_data="x", url="https://example.com"),
            "exactly one of the optional fields",
        ),
    ],
)
async def test_bad_buttons_are_refused(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser, button: InlineKeyboardButton, error: str
) -> None:
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.send_message(alice.id, "no", reply_markup=keyboard([button]))
    assert bot_api.violations
    bot_api.violations.clear()


async def test_good_link_buttons_are_accepted(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    link = bot_api.deep_link("inv_AbC-123")
    markup = keyboard(
        [InlineKeyboardButton(text="Invite", url=link)],
        [InlineKeyboardButton(text="Profile", url="tg://user?id=1001")],
    )
    message = await bot.send_message(alice.id, "links", reply_markup=markup)
    assert message.reply_markup is not None
    assert bot_api.last(alice).button("Invite")["url"] == link


# -- edits -----------------------------------------------------------------------------------


async def test_identical_edit_is_not_modified_but_no_violation(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    markup = keyboard([callback("Again", "again")])
    sent = await bot.send_message(
        alice.id, "<b>Count</b>: 1", parse_mode="HTML", reply_markup=markup
    )

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            chat_id=alice.id,
            message_id=sent.message_id,
            text="<b>Count</b>: 1",
            parse_mode="HTML",
            reply_markup=markup,
        )
    assert [n.message_id for n in bot_api.not_modified] == [sent.message_id]
    assert bot_api.violations == []

    # Same text without the bold entity is a change.
    await bot.edit_message_text(
        chat_id=alice.id, message_id=sent.message_id, text="Count: 1", reply_markup=markup
    )
    stored = bot_api.last(alice)
    assert (stored.text, stored.edited, stored.entities) == ("Count: 1", 1, [])


async def test_edit_without_markup_removes_the_keyboard(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    sent = await bot.send_message(alice.id, "Pick", reply_markup=keyboard([callback("A", "a")]))
    edited = await bot.edit_message_text(chat_id=alice.id, message_id=sent.message_id, text="Done")
    assert isinstance(edited, Message)
    assert edited.reply_markup is None
    assert bot_api.last(alice).reply_markup is None
    assert bot_api.last(alice).previous_texts == ["Pick"]

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=alice.id, message_id=sent.message_id)


async def test_editing_a_missing_message_is_refused(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(chat_id=alice.id, message_id=999, text="x")
    expect_violation(bot_api, "does not exist")

    sent = await bot.send_message(alice.id, "soon gone")
    bot_api.user_deletes(bot_api.last(alice))
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(chat_id=alice.id, message_id=sent.message_id, text="x")
    # A person deleting the message is not the bot's fault.
    assert bot_api.violations == []


async def test_delete_message(bot: Bot, bot_api: FakeBotAPI, alice: FakeUser) -> None:
    sent = await bot.send_message(alice.id, "temporary")
    assert await bot.delete_message(alice.id, sent.message_id)
    assert bot_api.messages(alice)[-1].deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.id, sent.message_id)


# -- callback queries ------------------------------------------------------------------------


async def test_callback_answers_and_their_errors(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    await bot.send_message(alice.id, "Pick", reply_markup=keyboard([callback("Yes", "yes")]))
    query = await bot_api.tap(alice, bot_api.last(alice), "Yes")
    assert await bot.answer_callback_query(query, text="Saved", show_alert=True)
    answer = bot_api.callback_answer(query)
    assert (answer.text, answer.show_alert) == ("Saved", True)

    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query)
    expect_violation(bot_api, "answered twice")


async def test_stale_callback_query(bot: Bot, bot_api: FakeBotAPI, alice: FakeUser) -> None:
    await bot.send_message(alice.id, "Pick", reply_markup=keyboard([callback("Yes", "yes")]))
    query = await bot_api.press(alice, bot_api.last(alice), "yes")
    bot_api.make_stale(query)
    with pytest.raises(TelegramBadRequest) as raised:
        await bot.answer_callback_query(query)
    assert raised.value.message == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    )
    assert bot_api.violations == []


async def test_callback_timeout_expires_queries() -> None:
    async with FakeBotAPI(callback_timeout=0.05) as api:
        person = api.user(5, "Eve")
        await api.send(person, "hi")
        bot = make_bot(api)
        try:
            await bot.send_message(person.id, "Pick", reply_markup=keyboard([callback("A", "a")]))
            query = await api.press(person, api.last(person), "a")
            await asyncio.sleep(0.1)
            with pytest.raises(TelegramBadRequest, match="query is too old"):
                await bot.answer_callback_query(query)
        finally:
            await bot.session.close()
        assert api.violations == []


async def test_press_checks_the_buttons_a_person_can_see(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    await bot.send_message(alice.id, "Pick", reply_markup=keyboard([callback("A", "a")]))
    with pytest.raises(AssertionError, match="no button with callback_data 'b'"):
        await bot_api.press(alice, bot_api.last(alice), "b")


# -- people who cannot be written to ---------------------------------------------------------


async def test_blocked_user_gives_forbidden(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    bot_api.block(alice.id)
    with pytest.raises(TelegramForbiddenError) as raised:
        await bot.send_message(alice.id, "still there?")
    assert raised.value.message == "Forbidden: bot was blocked by the user"
    # Sends the stand-in does not simulate still respect the block.
    with pytest.raises(TelegramForbiddenError):
        await bot.send_photo(alice.id, "AgACAgIAAxkBAAIB")
    assert bot_api.violations == []
    kicked = bot_api.pending_updates()[-1]["my_chat_member"]["new_chat_member"]
    assert kicked["status"] == "kicked"


async def test_deactivated_and_unknown_people(bot: Bot, bot_api: FakeBotAPI) -> None:
    silent = bot_api.user(2002, "Bob")
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(silent.id, "hi")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(424242, "hi")

    await bot_api.send(silent, "/start")
    bot_api.deactivate(silent.id)
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_message(silent.id, "hi")
    assert bot_api.violations == []


# -- rates and injected failures -------------------------------------------------------------


async def test_injected_429_becomes_retry_after(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    bot_api.fail_next("sendMessage", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(alice.id, "first")
    assert raised.value.retry_after == 3
    assert "Too Many Requests: retry after 3" in raised.value.message

    await bot.send_message(alice.id, "second")
    assert [m.text for m in bot_api.messages(alice)] == ["second"]
    assert bot_api.violations == []


async def test_rates_are_enforced_when_asked() -> None:
    async with FakeBotAPI(enforce_rates=True) as api:
        people = [api.user(10 + i, f"P{i}") for i in range(2)]
        for person in people:
            await api.send(person, "hi")
        bot = make_bot(api)
        try:
            await bot.send_message(people[0].id, "one")
            with pytest.raises(TelegramRetryAfter) as raised:
                await bot.send_message(people[0].id, "two")
            assert raised.value.retry_after == 1
            # Another chat has its own allowance.
            await bot.send_message(people[1].id, "one")
        finally:
            await bot.session.close()
        assert api.max_sends_in_window(1.0, chat_id=people[0].id) == 1
        assert api.max_sends_in_window(1.0) == 2
        assert any("more than 1 messages" in v for v in api.violations)


async def test_sends_are_timed_even_without_enforcement(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    for n in range(3):
        await bot.send_message(alice.id, f"burst {n}")
    assert bot_api.max_sends_in_window(1.0, chat_id=alice.id) == 3


# -- commands and other methods --------------------------------------------------------------


async def test_commands_are_stored_per_scope_and_language(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands(
        [BotCommand(command="start", description="Начать")],
        scope=BotCommandScopeChat(chat_id=alice.id),
        language_code="ru",
    )
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    scoped = await bot.get_my_commands(
        scope=BotCommandScopeChat(chat_id=alice.id), language_code="ru"
    )
    assert [c.description for c in scoped] == ["Начать"]
    assert await bot.get_my_commands(language_code="de") == []
    stored = bot_api.my_commands({"type": "chat", "chat_id": alice.id}, "ru")
    assert stored == [{"command": "start", "description": "Начать"}]

    await bot.delete_my_commands()
    assert await bot.get_my_commands() == []

    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])
    expect_violation(bot_api, "command 'Start'")


async def test_chat_action_get_chat_and_menu_button(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    assert await bot.send_chat_action(alice.id, "typing")
    assert bot_api.chat_actions == [(alice.id, "typing")]
    chat = await bot.get_chat(alice.id)
    assert (chat.id, chat.type, chat.first_name) == (alice.id, "private", "Alice")
    assert await bot.set_chat_menu_button()
    assert bot_api.menu_buttons[None] == {"type": "default"}


# -- updates and polling ---------------------------------------------------------------------


async def test_get_updates_offsets_and_timeouts(bot: Bot, bot_api: FakeBotAPI) -> None:
    person = bot_api.user(3003, "Carol")
    await bot_api.send(person, "one")
    await bot_api.send(person, "/start abc")

    updates = await bot.get_updates(timeout=0)
    assert [u.message.text for u in updates if u.message] == ["one", "/start abc"]
    command = updates[1].message
    assert command is not None and command.entities is not None
    assert (command.entities[0].type, command.entities[0].length) == ("bot_command", 6)

    # Asking from the last id + 1 confirms both, so they are gone.
    after = updates[-1].update_id + 1
    started = time.monotonic()
    assert await bot.get_updates(offset=after, timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 3
    assert bot_api.pending_updates() == []

    # A long poll returns as soon as something arrives.
    poll = asyncio.create_task(bot.get_updates(offset=after, timeout=10))
    await asyncio.sleep(0.1)
    await bot_api.send(person, "three")
    got = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in got if u.message] == ["three"]


async def test_stop_cuts_a_long_poll_short() -> None:
    api = FakeBotAPI()
    await api.start()
    bot = make_bot(api)
    try:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await api.stop()
        assert await asyncio.wait_for(poll, 5) == []
        assert time.monotonic() - started < 3
    finally:
        await bot.session.close()


async def test_dispatcher_polls_handles_start_and_callbacks(bot: Bot, bot_api: FakeBotAPI) -> None:
    dp = Dispatcher()
    payloads: list[str | None] = []

    @dp.message(CommandStart())
    async def on_start(message: Message, command: CommandObject) -> None:
        payloads.append(command.args)
        await message.answer(
            f"Hello, <b>{message.from_user.first_name if message.from_user else '?'}</b>!",
            parse_mode="HTML",
            reply_markup=keyboard([callback("Continue", "go")]),
        )

    @dp.callback_query(F.data == "go")
    async def on_go(query: CallbackQuery) -> None:
        await query.answer("On it")
        if isinstance(query.message, Message):
            await query.message.edit_text("Continued")

    person = bot_api.user(4004, "Dana")
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    try:
        await bot_api.send(person, "/start inv_42")
        greeting = await bot_api.reply(person)
        assert greeting.text == "Hello, Dana!"
        assert greeting.entity_texts("bold") == ["Dana"]
        assert payloads == ["inv_42"]

        query = await bot_api.tap(person, greeting, "Continue")
        [edited] = await bot_api.replies(person)
        assert edited.text == "Continued" and edited.reply_markup is None
        assert (await bot_api.wait_answered(query)).text == "On it"
    finally:
        await dp.stop_polling()
        await polling


async def test_overlapping_polls_and_webhooks_conflict(bot: Bot, bot_api: FakeBotAPI) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 2)
    assert await second == []

    assert await bot.set_webhook("https://example.com/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert info.url == "https://example.com/hook"
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""


async def test_waiting_helpers(bot: Bot, bot_api: FakeBotAPI, alice: FakeUser) -> None:
    async def reply_later() -> None:
        await asyncio.sleep(0.05)
        first = await bot.send_message(alice.id, "working…")
        await asyncio.sleep(0.05)
        await bot.edit_message_text(chat_id=alice.id, message_id=first.message_id, text="done")

    mark = bot_api.mark()
    task = asyncio.create_task(reply_later())
    [done] = await bot_api.wait_for(lambda m: m.text == "done", chat_id=alice, since=mark)
    await task
    assert (done.edited, done.previous_texts) == (1, ["working…"])
    await bot_api.assert_silent(alice, since=bot_api.mark(), seconds=0.05)

    await bot.send_message(alice.id, "unexpected")
    with pytest.raises(AssertionError, match="expected to stay silent"):
        await bot_api.assert_silent(alice, since=mark, seconds=0)


async def test_replying_to_a_persons_message(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    asked = await bot_api.send(alice, "what time is it?")
    answer = await bot.send_message(
        alice.id, "noon", reply_parameters=ReplyParameters(message_id=asked)
    )
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "what time is it?"
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(alice.id, "?", reply_parameters=ReplyParameters(message_id=999))


def test_violations_report_is_readable() -> None:
    api = FakeBotAPI()
    api.violations.extend(["sendMessage: unknown parameter 'x'", "invalid HTML in message text"])
    assert botapi_plugin.violations_report(api) == (
        "the bot made 2 request(s) Telegram would refuse:\n"
        "  - sendMessage: unknown parameter 'x'\n"
        "  - invalid HTML in message text"
    )


# -- other updates ---------------------------------------------------------------------------


async def test_group_commands_contacts_and_inaccessible_messages(
    bot: Bot, bot_api: FakeBotAPI, alice: FakeUser
) -> None:
    group = bot_api.group(-1001, "Branch staff")
    await bot_api.send(alice, "just chatting", chat=group)  # not heard: privacy mode
    await bot_api.send(alice, "/report@branchbot_test_bot now", chat=group)
    await bot_api.send_contact(alice, "+15550001")
    await bot.send_message(alice.id, "Pick", reply_markup=keyboard([callback("A", "a")]))
    await bot_api.press_inaccessible(alice, bot_api.last(alice), "a")

    updates = await bot.get_updates()
    texts = [u.message.text for u in updates if u.message and u.message.text]
    assert texts == ["hello", "/report@branchbot_test_bot now"]
    report = next(u.message for u in updates if u.message and u.message.chat.id == group.id)
    command = "/report@branchbot_test_bot"
    assert report.entities is not None and report.entities[0].length == len(command)

    contact = next(u.message.contact for u in updates if u.message and u.message.contact)
    assert (contact.phone_number, contact.user_id) == ("+15550001", alice.id)

    query = next(u.callback_query for u in updates if u.callback_query)
    assert isinstance(query.message, InaccessibleMessage)
    assert query.data == "a"


async def test_open_link_sends_start_with_payload(bot: Bot, bot_api: FakeBotAPI) -> None:
    person = bot_api.user(5005, "Erin")
    await bot_api.open_link(person, bot_api.deep_link("inv_7"))
    [update] = await bot.get_updates()
    assert update.message is not None and update.message.text == "/start inv_7"


async def test_wait_for_reports_what_it_saw(bot_api: FakeBotAPI, alice: FakeUser) -> None:
    mark = bot_api.mark()
    with pytest.raises(AssertionError, match="got 0; what the bot did since the mark:\n  nothing"):
        await bot_api.replies(alice, since=mark, timeout=0.1)


# -- the parser and the spec on their own ----------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("&lt;&gt;&amp;&quot;&laquo;&#12345678;", '<>&"&laquo;&#12345678;', []),
        ("🏟 🏟<i>🏟 &lt🏟</i>", "🏟 🏟🏟 <🏟", [("italic", 5, 6)]),
        ("<a href=telegram.org>site</a>", "site", [("text_link", 0, 4)]),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ('<span class="tg-spoiler">s</span>', "s", [("spoiler", 0, 1)]),
    ],
)
def test_html_parser(html: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    parsed = parse_html(html)
    assert parsed.text == text
    assert [(e["type"], e["offset"], e["length"]) for e in parsed.entities] == entities


def test_html_parser_reports_byte_offsets() -> None:
    with pytest.raises(EntityParseError, match='Unsupported start tag "abac" at byte offset 13'):
        parse_html("🏟 🏟&lt;<abac>")


def test_check_request_against_the_spec() -> None:
    assert check_request("sendMessage", {"chat_id": 1, "text": "x"}) == []
    assert check_request("sendTelepathy", {}) == ["unknown method 'sendTelepathy'"]
    assert check_request("sendMessage", {"chat_id": 1}) == [
        "sendMessage: missing required parameter 'text'"
    ]
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a", "colour": "red"}]]}
    [problem] = check_request("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": markup})
    assert "InlineKeyboardButton has no field 'colour'" in problem
    [problem] = check_request("setMyCommands", {"commands": [{"command": "start"}]})
    assert "BotCommand lacks required field 'description'" in problem
    scope = {"type": "chat", "chat_id": 5, "user_id": 1}
    [problem] = check_request("deleteMyCommands", {"scope": scope})
    assert "BotCommandScopeChat has no field 'user_id'" in problem
