"""What the pipeline hands to plugins and bots, and what it sends, as the original does:
shared links go to plugins only, quoted replies are answered, replies without content are
never sent. Real pipeline (RecordingChannel), real PluginManager with a plugin written the
way third-party plugins for the original are, a recording bot."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import config
from bridge.bridge import Bridge
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from plugins import PluginManager
from tests.fakes.bots import RecordingBot
from tests.fakes.recording_channel import RecordingChannel, make_msg

GROUP = ("g-1", "测试群")

# Answers what the test puts in `answers` (content -> Reply) with BREAK_PASS; records
# every context it sees; on the way out, empties the replies whose text is in `empty_on_send`.
SCRIPTED = '''
import plugins
from plugins import *


@plugins.register(name="Scripted", desire_priority=0, desc="answers what the test scripts", version="0.1", author="tests")
class Scripted(Plugin):
    def __init__(self):
        super().__init__()
        self.seen = []
        self.answers = {}
        self.empty_on_send = set()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        self.handlers[Event.ON_SEND_REPLY] = self.on_send_reply

    def on_handle_context(self, e_context):
        context = e_context["context"]
        self.seen.append((context.type, context.content))
        if isinstance(context.content, str) and context.content in self.answers:
            e_context["reply"] = self.answers[context.content]
            e_context.action = EventAction.BREAK_PASS

    def on_send_reply(self, e_context):
        reply = e_context["reply"]
        if any(text in str(reply.content) for text in self.empty_on_send):
            reply.content = ""
'''


@pytest.fixture
def scripted(tmp_path: Path, settings):
    root = tmp_path / "plugins_dir"
    (root / "tp_scripted").mkdir(parents=True)
    (root / "tp_scripted" / "__init__.py").write_text("from .scripted import *\n", encoding="utf-8")
    (root / "tp_scripted" / "scripted.py").write_text(textwrap.dedent(SCRIPTED), encoding="utf-8")
    settings["single_chat_prefix"] = [""]
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["bot_type"] = "tests.fakes.bots:RecordingBot"
    RecordingBot.clear()
    Bridge().reset_bot()
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    manager = PluginManager()
    manager.configure(str(root), include_bundled=False)
    manager.load_plugins()
    yield manager.instances["SCRIPTED"]
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    Bridge().reset_bot()


@pytest.fixture
def channel(scripted):
    ch = RecordingChannel()
    yield ch
    ch.stop()


def share(url: str, group=None):
    return make_msg(url, group=group, ctype=ContextType.SHARING)


# --- shared links (SHARING)


@pytest.mark.parametrize("group", [GROUP, None], ids=["group, nobody @-ed the bot", "private"])
def test_shared_links_reach_plugins_but_not_the_bot(channel, scripted, group):
    channel.receive(share("https://example.com/article", group=group))
    assert channel.wait_idle(10)
    assert scripted.seen == [(ContextType.SHARING, "https://example.com/article")]
    assert RecordingBot.recorded() == []
    assert channel.sent == []


def test_a_plugin_can_answer_a_shared_link_in_a_group(channel, scripted):
    scripted.answers["https://example.com/article"] = Reply(ReplyType.TEXT, "summary of the article")
    channel.receive(share("https://example.com/article", group=GROUP))
    assert channel.wait_idle(10)
    assert channel.sent == [(GROUP[0], ReplyType.TEXT, "@Alice\nsummary of the article")]


def test_shared_links_of_groups_outside_the_white_list_are_ignored(channel, scripted, settings):
    settings["group_name_white_list"] = ["another group"]
    channel.receive(share("https://example.com/article", group=GROUP))
    assert channel.wait_idle(10)
    assert scripted.seen == [] and channel.sent == []


# --- quoted replies


@pytest.mark.parametrize("group", [None, GROUP], ids=["private", "group @"])
def test_quoted_replies_are_answered_with_the_quote(channel, scripted, group):
    quoted = "「Bob: 明天几点开会？」\n- - - - - - - - - - - - - - -\n这个会议在哪里"
    msg = make_msg("@Bot\u2005" + quoted if group else quoted, group=group, at=bool(group))
    channel.receive(msg)
    assert channel.wait_idle(10)
    assert [query for query, _ in RecordingBot.recorded()] == [quoted]
    assert len(channel.sent) == 1 and channel.sent[0][2].endswith("echo: " + quoted)


# --- replies without content


# (type, content) of replies with nothing to send; a fresh Reply for each test.
EMPTY_REPLIES = [
    (ReplyType.TEXT, ""),
    (ReplyType.TEXT, None),
    (ReplyType.TEXT, " \n "),
    (ReplyType.INFO, ""),
    (ReplyType.ERROR, None),
    (ReplyType.IMAGE_URL, ""),
    (ReplyType.IMAGE_URL, None),
    (ReplyType.VOICE, None),
    (ReplyType.FILE, ""),
    (ReplyType.VIDEO_URL, None),
    (ReplyType.IMAGE, None),
    (None, None),
]
EMPTY_IDS = [f"{rtype}-{content!r}" for rtype, content in EMPTY_REPLIES]


@pytest.mark.parametrize("rtype, content", EMPTY_REPLIES, ids=EMPTY_IDS)
@pytest.mark.parametrize("group", [None, GROUP], ids=["private", "group"])
def test_a_plugin_reply_without_content_is_not_sent(channel, scripted, settings, rtype, content, group):
    settings["single_chat_reply_prefix"] = "[bot] "
    scripted.answers["quiet please"] = Reply(rtype, content)
    channel.receive(make_msg("@Bot\u2005quiet please" if group else "quiet please", group=group, at=bool(group)))
    channel.receive(make_msg("@Bot\u2005next" if group else "next", group=group, at=bool(group)))
    assert channel.wait_idle(10)
    # Nothing for the first message (no empty text, no lone "@Alice"); the next is answered.
    assert [content for _, _, content in channel.sent] == ["@Alice\necho: next" if group else "[bot] echo: next"]


def test_a_bot_answer_without_content_is_not_sent(channel, settings):
    settings["bot_type"] = "tests.fakes.bots:EmptyBot"
    Bridge().reset_bot()
    channel.receive(make_msg("@Bot\u2005hello", group=GROUP, at=True))
    assert channel.wait_idle(10)
    assert channel.sent == []


@pytest.mark.parametrize("rtype, content", EMPTY_REPLIES, ids=EMPTY_IDS)
def test_deliver_skips_parts_without_content(channel, rtype, content):
    msg = make_msg("@Bot\u2005question", group=GROUP, at=True)
    context = channel._compose_context(msg.ctype, msg.content, isgroup=True, msg=msg)
    channel.deliver(context, Reply(rtype, content))
    channel.deliver(context, Reply(ReplyType.TEXT, "part two"))
    assert channel.sent == [(GROUP[0], ReplyType.TEXT, "@Alice\npart two")]


def test_a_reply_emptied_on_its_way_out_is_not_sent(channel, scripted):
    # ON_SEND_REPLY is the last chance for a plugin; what it leaves empty is not sent.
    scripted.empty_on_send.add("secret")
    channel.receive(make_msg("tell the secret"))
    channel.receive(make_msg("hello"))
    assert channel.wait_idle(10)
    assert channel.sent == [("alice", ReplyType.TEXT, "echo: hello")]


# --- what plugins produce is made sendable (issue 11)


def test_a_plugin_answer_with_a_lone_surrogate_or_of_any_size_is_made_sendable(channel, scripted, settings):
    settings["answer_max_chars"] = 1000
    scripted.answers["odd"] = Reply(ReplyType.TEXT, "half an emoji \ud83d")
    scripted.answers["long"] = Reply(ReplyType.TEXT, "y" * 200_000)
    scripted.answers["长"] = Reply(ReplyType.TEXT, "字" * 5000)
    for text in ("odd", "long", "长"):
        channel.receive(make_msg(text, msg_id=text))
    assert channel.wait_idle(10)
    sent = [content for _, _, content in channel.sent]
    assert sent[0] == "half an emoji \ufffd"
    assert len(sent[1]) == 1000 and sent[1].startswith("y" * 900)
    assert sent[1].endswith("[The answer was too long; the rest was left out.]")
    assert len(sent[2]) == 1000 and sent[2].endswith("（回答太长，后面的部分已省略）")
