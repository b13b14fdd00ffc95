"""ChatMessage subclasses written like the original's channels (and the third-party channels
copied from them): they fill the fields in their own __init__ and never call super().__init__()."""
from __future__ import annotations

import threading

import pytest

from bridge.bridge import Bridge
from bridge.context import ContextType
from bridge.reply import ReplyType
from channel.chat_message import ChatMessage
from tests.fakes.recording_channel import RecordingChannel


class OriginalStyleMessage(ChatMessage):
    def __init__(self, raw: dict, download=None):
        # No super().__init__(raw), as in the original's channels.
        self.msg_id = raw["id"]
        self.ctype = ContextType.TEXT
        self.content = raw["text"]
        self.from_user_id = self.other_user_id = raw["from"]
        self.from_user_nickname = self.other_user_nickname = raw["from"].title()
        self.to_user_id = "bot-id"
        self._rawmsg = raw
        if download is not None:
            self._prepare_fn = download


def test_prepare_runs_once_when_threads_race():
    calls = []
    msg = OriginalStyleMessage({"id": "1", "text": "hi", "from": "alice"}, download=lambda: calls.append(1))
    start = threading.Barrier(8)
    errors = []

    def ask():
        start.wait()
        try:
            msg.prepare()
        except Exception as e:  # the failure this guards against: AttributeError _prepare_lock
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert calls == [1]
    msg.prepare()
    assert calls == [1]


def test_prepare_without_a_prepare_function_does_nothing():
    msg = OriginalStyleMessage({"id": "2", "text": "hi", "from": "bob"})
    msg.prepare()
    assert msg._prepared is False


def test_the_other_behaviours_work_without_init():
    msg = OriginalStyleMessage({"id": "3", "text": "hello", "from": "carol"})
    text = str(msg)
    assert text.startswith("ChatMessage: id=3, create_time=None, ctype=TEXT, content=hello, from_user_id=carol")
    assert (msg.is_group, msg.is_at, msg.my_msg, msg.at_list, msg.actual_user_id) == (False, False, False, None, None)
    assert msg._rawmsg == {"id": "3", "text": "hello", "from": "carol"}


@pytest.fixture
def echo_channel(settings):
    settings["single_chat_prefix"] = [""]
    settings["bot_type"] = "tests.fakes.bots:EchoBot"
    Bridge().reset_bot()
    channel = RecordingChannel()
    yield channel
    channel.stop()
    Bridge().reset_bot()


def test_such_messages_go_through_the_pipeline(echo_channel):
    prepared = []
    msg = OriginalStyleMessage({"id": "4", "text": "question", "from": "dave"}, download=lambda: prepared.append(True))
    echo_channel.receive(msg)
    assert echo_channel.wait_idle(10)
    msg.prepare()  # what a plugin does before reading a media file
    assert echo_channel.sent == [("dave", ReplyType.TEXT, "echo: question")]
    assert prepared == [True]
