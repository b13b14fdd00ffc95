"""What a log may show of a secret (common/masking.py) and where the console writes."""
from __future__ import annotations

import logging
import sys

import pytest

from common.masking import mask_urls, mask_value
from config import drag_sensitive


@pytest.mark.parametrize(
    "name, value, shown",
    [
        ("proxy", "http://bob:hunter2@10.0.0.1:3128", "http://bob:*****@10.0.0.1:3128"),
        ("proxy", "socks5h://bob:p@ss@proxy.lan:1080", "socks5h://bob:*****@proxy.lan:1080"),
        ("proxy", "bob:hunter2@10.0.0.1:3128", "bob:*****@10.0.0.1:3128"),  # no scheme
        ("proxy", "http://127.0.0.1:7890", "http://127.0.0.1:7890"),  # nothing to hide
        ("dify_api_base", "https://u:pw-in-url@dify.lan/v1", "https://u:*****@dify.lan/v1"),
        ("web_password", "correct-horse-battery", "*****"),  # a password is hidden whole
        ("web_ui_password", "dify-on-wechat", "*****"),
        ("dify_api_key", "app-1234567890", "app*****890"),  # a key keeps its ends
        ("model", "dify", "dify"),
    ],
)
def test_logged_values(name, value, shown):
    assert mask_value(name, value) == shown
    assert drag_sensitive({name: value}) == {name: shown}


def test_urls_inside_a_message_lose_their_password():
    text = "proxy http://bob:hunter2@10.0.0.1:3128 failed; tried https://a:b@c.example/x too"
    assert mask_urls(text) == "proxy http://bob:*****@10.0.0.1:3128 failed; tried https://a:*****@c.example/x too"


def test_console_writes_to_stderr_and_a_quiet_console_survives_debug_and_reload():
    from common import log

    console = log._find_handler("console")
    assert console.stream is sys.stderr  # stdout stays free for the terminal conversation
    debug_before, floor_before = log.is_debug(), log._console_floor
    try:
        log.set_console_level(logging.WARNING)
        log.set_debug(True)  # what #debug or a reload with debug: true does
        assert console.level == logging.WARNING and log.is_debug()
        log.set_debug(False)  # what a reload with debug: false does
        assert console.level == logging.WARNING and not log.is_debug()
    finally:
        log._console_floor = floor_before
        log.set_debug(debug_before)


@pytest.mark.parametrize(
    "text, shown",
    [
        ("#auth hunter2", "#auth *****"),
        ("#认证 hunter2", "#认证 *****"),
        ("#AUTH  hunter2 extra", "#AUTH  *****"),
        ("#set_openai_api_key sk-abcdef123456", "#set_openai_api_key *****"),
        ("#auth", "#auth"),  # nothing to hide
        ("#author hunter2", "#author hunter2"),  # another word
        ("tell me about #auth hunter2", "tell me about #auth hunter2"),  # not a command
    ],
)
def test_secret_command_arguments_are_hidden(text, shown):
    from common.masking import mask_command

    assert mask_command(text) == shown
