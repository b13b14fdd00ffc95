"""channel/feishu/message.py and cards.py: Feishu message events as ChatMessages, and what is sent back."""
from __future__ import annotations

import json

import pytest

from bridge.context import ContextType
from channel.feishu import cards
from channel.feishu.message import BotIdentity, FeishuMessage, UnsupportedMessage, parts_of
from tests.fakes.feishu.events import mention, message_event, text_event

BOT = BotIdentity("ou_bot", "Bot")


def test_the_bots_mention_is_removed_and_makes_an_at_others_become_names():
    event = text_event("ou_a", "@_user_1 hi @_user_2 and @_user_10", chat_id="oc_g",
                       mentions=[mention("@_user_1", "ou_bot", "Bot"), mention("@_user_2", "ou_x", "Xu"),
                                 mention("@_user_10", "ou_y", "Yan")])
    msg = FeishuMessage(event, 0, BOT)
    assert msg.content == "hi @Xu and @Yan" and msg.is_at and msg.is_group
    assert msg.other_user_id == "oc_g" and msg.actual_user_id == "ou_a" and msg.to_user_id == "ou_bot"


def test_without_the_open_id_the_bot_name_decides_and_another_mention_is_no_at():
    event = text_event("ou_a", "@_user_1 hi", chat_id="oc_g", mentions=[mention("@_user_1", "ou_other", "Bot")])
    assert FeishuMessage(event, 0, BotIdentity("", "Bot")).is_at
    assert not FeishuMessage(event, 0, BOT).is_at  # same name, not the bot's open id


def test_a_post_is_its_pictures_then_its_text():
    event = message_event("ou_a", "post", {"title": "T", "content": [
        [{"tag": "text", "text": "see "}, {"tag": "a", "text": "doc", "href": "https://x.example/d"}],
        [{"tag": "img", "image_key": "img_1"}, {"tag": "img", "image_key": "img_2"}]]})
    parts, at = parts_of(event, BOT)
    assert [p.ctype for p in parts] == [ContextType.IMAGE, ContextType.IMAGE, ContextType.TEXT] and not at
    first, text = FeishuMessage(event, 0, BOT), FeishuMessage(event, 2, BOT)
    message_id = event["message"]["message_id"]
    assert first.msg_id == message_id + "#0" and text.msg_id == message_id  # each part its own dedup key
    assert text.content == "T\nsee doc (https://x.example/d)"


def test_images_and_files_download_when_prepared(tmp_path):
    event = message_event("ou_a", "file", {"file_key": "file_1", "file_name": "report.pdf"})
    asked = []

    def download(message_id, key, kind, max_bytes):
        asked.append((message_id, key, kind))
        return b"%PDF-1.4"

    msg = FeishuMessage(event, 0, BOT, download, path=str(tmp_path / "f.pdf"))
    assert msg.ctype == ContextType.FILE and asked == []
    msg.prepare()
    assert asked == [(event["message"]["message_id"], "file_1", "file")]
    assert open(msg.content, "rb").read() == b"%PDF-1.4"


def test_a_voice_clip_is_a_voice_message():
    [part], _ = parts_of(message_event("ou_a", "audio", {"file_key": "file_v", "duration": 3000}), BOT)
    assert part.ctype == ContextType.VOICE and part.key == "file_v" and part.kind == "file"
    assert FeishuMessage(message_event("ou_a", "audio", {"file_key": "file_v"}), 0, BOT).content.endswith(".opus")


@pytest.mark.parametrize("kind, content", [("share_chat", {"chat_id": "oc_x"}), ("sticker", {"file_key": "s"}),
                                           ("post", {"content": [[]]}), ("image", {})])
def test_unhandled_messages_are_named(kind, content):
    with pytest.raises(UnsupportedMessage):
        parts_of(message_event("ou_a", kind, content), BOT)


def test_markdown_goes_as_an_updatable_card_and_plain_text_as_text():
    kind, content = cards.message_body("**bold** text")
    assert kind == "interactive"
    card = json.loads(content)
    assert card["config"]["update_multi"] and card["elements"] == [{"tag": "markdown", "content": "**bold** text"}]
    assert cards.message_body("just words") == ("text", json.dumps({"text": "just words"}))
    long = "港" * 20000
    assert "".join(cards.pieces(long)) == long and all(len(p.encode()) <= cards.PIECE_MAX_BYTES for p in cards.pieces(long))
