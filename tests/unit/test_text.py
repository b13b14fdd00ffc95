"""common/text.py: text that can always be encoded, answers of a bounded size."""
from __future__ import annotations

import json

import pytest

from common.text import cut_text, safe_data, safe_text, too_long_note


@pytest.mark.parametrize("raw, safe", [
    ("a\ud800b", "a\ufffdb"),
    ("x\udc00", "x\ufffd"),
    ("\ud800\ud800", "\ufffd\ufffd"),
    ("end\ud83d", "end\ufffd"),
    ("\ud83d\ude00", "\U0001F600"),  # a pair typed as two escapes is the character it encodes
    ("普通的文字 😀", "普通的文字 😀"),
])
def test_safe_text_replaces_lone_surrogates(raw, safe):
    assert safe_text(raw) == safe
    safe_text(raw).encode("utf-8")  # never raises


def test_safe_text_returns_clean_text_unchanged():
    text = "nothing to do here"
    assert safe_text(text) is text


def test_safe_data_reaches_keys_and_nested_values():
    data = json.loads('{"k\\ud800": ["\\udfff", 1, null, {"deep": "\\ud800"}], "n": 2.5, "t": true}')
    assert safe_data(data) == {"k\ufffd": ["\ufffd", 1, None, {"deep": "\ufffd"}], "n": 2.5, "t": True}
    json.dumps(safe_data(data), ensure_ascii=False).encode("utf-8")


def test_cut_text_keeps_short_text_and_cuts_long_text_with_a_note():
    assert cut_text("short", 1000, False) == "short"
    cut = cut_text("x" * 5000, 1000, False)
    assert len(cut) == 1000 and cut.startswith("x" * 900) and cut.endswith(too_long_note(False))
    assert cut_text("字" * 5000, 1000, True).endswith(too_long_note(True))


def test_new_settings_refuse_values_below_their_minimum():
    from config import ConfigError, check_value

    for key, value in (("answer_max_chars", 10), ("tmp_max_age", 5), ("web_media_user_max_bytes", 10),
                       ("web_media_max_bytes", 0)):
        with pytest.raises(ConfigError, match=f"'{key}' must be at least"):
            check_value(key, value)
    check_value("answer_max_chars", 2000)
    check_value("tmp_max_age", 90.5)
