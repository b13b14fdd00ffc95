"""The original's trigger rules, as a table of cases through ChatChannel._compose_context."""
from __future__ import annotations

import pytest

from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from tests.fakes.recording_channel import RecordingChannel, make_msg

GROUP = ("g-1", "测试群")
OTHER_GROUP = ("g-2", "Random")

BASE = {
    "single_chat_prefix": ["bot", "@bot"],
    "group_chat_prefix": ["@bot"],
    "group_chat_keyword": ["help"],
    "group_name_white_list": ["测试群"],
    "group_name_keyword_white_list": ["VIP"],
    "group_chat_in_one_session": [],
    "nick_name_black_list": ["Mallory"],
    "image_create_prefix": ["画"],
}

# (case id, settings changes, message kwargs, expected content or None, expected session id)
CASES = [
    ("private prefix stripped", {}, dict(content="bot hello"), "hello", "alice"),
    ("private second prefix", {}, dict(content="@bot hi"), "hi", "alice"),
    ("private no prefix dropped", {}, dict(content="hello"), None, None),
    ("private empty prefix answers all", {"single_chat_prefix": [""]}, dict(content="hello"), "hello", "alice"),
    ("private black list", {}, dict(content="bot hello", sender="m", sender_name="Mallory"), None, None),
    ("group prefix", {}, dict(content="@bot what?", group=GROUP), "what?", "alice@@g-1"),
    ("group keyword kept in text", {}, dict(content="I need help now", group=GROUP), "I need help now", "alice@@g-1"),
    ("group no trigger", {}, dict(content="just chatting", group=GROUP), None, None),
    ("group @ triggers and is stripped", {}, dict(content="@Bot\u2005what time", group=GROUP, at=True), "what time", "alice@@g-1"),
    ("group @ with at_list names", {}, dict(content="@Bob @Bot what", group=GROUP, at=True, at_list=["Bob"]), "what", "alice@@g-1"),
    ("group @ off", {"group_at_off": True}, dict(content="@Bot what", group=GROUP, at=True), None, None),
    ("group @ off but prefix", {"group_at_off": True}, dict(content="@bot what", group=GROUP, at=True), "what", "alice@@g-1"),
    ("group not white listed", {}, dict(content="@bot hi", group=OTHER_GROUP), None, None),
    ("group ALL_GROUP", {"group_name_white_list": ["ALL_GROUP"]}, dict(content="@bot hi", group=OTHER_GROUP), "hi", "alice@@g-2"),
    ("group keyword white list", {}, dict(content="@bot hi", group=("g-3", "VIP customers")), "hi", "alice@@g-3"),
    ("shared session group", {"group_chat_in_one_session": ["测试群"]}, dict(content="@bot hi", group=GROUP), "hi", "g-1"),
    ("shared session ALL_GROUP", {"group_chat_in_one_session": ["ALL_GROUP"]}, dict(content="@bot hi", group=GROUP), "hi", "g-1"),
    ("group black list on @", {}, dict(content="@Bot hi", group=GROUP, at=True, sender="m", sender_name="Mallory"), None, None),
    # The original let these through (black list only checked for @); fixed.
    ("group black list on prefix", {}, dict(content="@bot hi", group=GROUP, sender="m", sender_name="Mallory"), None, None),
    ("group black list on keyword", {}, dict(content="help me", group=GROUP, sender="m", sender_name="Mallory"), None, None),
    ("image create prefix", {}, dict(content="bot 画一只猫"), "一只猫", "alice"),
    # A quoted reply is answered with the quote, as the original DoW does (newer CoW drops it).
    ("quoted message answered", {}, dict(content="bot 「Alice: hi」\n- - - - - - -\nwhat"), "「Alice: hi」\n- - - - - - -\nwhat", "alice"),
]


@pytest.fixture
def channel(settings):
    for key, value in BASE.items():
        settings[key] = value
    ch = RecordingChannel()
    yield ch
    ch.stop()


@pytest.mark.parametrize("case, changes, kwargs, expected, session", CASES, ids=[c[0] for c in CASES])
def test_rule_table(channel, settings, case, changes, kwargs, expected, session):
    for key, value in changes.items():
        settings[key] = value
    msg = make_msg(**kwargs)
    context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=msg.is_group, msg=msg)
    if expected is None:
        assert context is None
        return
    assert context is not None
    assert context.content == expected
    assert context["session_id"] == session
    assert context["receiver"] == (msg.other_user_id)
    if msg.is_group:
        assert context["is_shared_session_group"] == (session == msg.other_user_id)


def test_image_create_prefix_changes_type(channel):
    msg = make_msg("bot 画一只猫")
    context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg)
    assert context.type == ContextType.IMAGE_CREATE


def test_own_message_follows_trigger_by_self(channel, settings):
    msg = make_msg("bot hi", sender="bot-id", sender_name="Bot")
    settings["trigger_by_self"] = False
    assert channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg) is None
    settings["trigger_by_self"] = True
    assert channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg) is not None


def test_group_message_from_the_bot_itself_in_group_is_ignored(channel):
    msg = make_msg("@bot hi", group=GROUP, sender="bot-id")
    assert channel._compose_context(ContextType.TEXT, msg.content, isgroup=True, msg=msg) is None


def test_transcribed_private_voice_needs_no_prefix(channel):
    msg = make_msg("hello there")
    context = channel._compose_context(ContextType.TEXT, "hello there", isgroup=False, msg=msg, origin_ctype=ContextType.VOICE)
    assert context is not None and context.content == "hello there"


def test_voice_reply_wishes(channel, settings):
    settings["always_reply_voice"] = True
    msg = make_msg("bot hi")
    context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg)
    # The recording channel cannot send voice, so no voice is wished for.
    assert "desire_rtype" not in context
    channel.NOT_SUPPORT_REPLYTYPE = []
    context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg)
    assert context["desire_rtype"] == ReplyType.VOICE
    settings["always_reply_voice"] = False
    settings["voice_reply_voice"] = True
    vmsg = make_msg("/tmp/x.silk", ctype=ContextType.VOICE)
    context = channel._compose_context(ContextType.VOICE, vmsg.content, isgroup=False, msg=vmsg)
    assert context["desire_rtype"] == ReplyType.VOICE


def test_user_data_reaches_the_context(channel, settings):
    settings.get_user_data("alice")["gpt_model"] = "gpt-4o"
    try:
        msg = make_msg("bot hi")
        context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg)
        assert context["gpt_model"] == "gpt-4o"
    finally:
        settings.get_user_data("alice").clear()


# --- reply decoration
def decorate(channel, msg, reply):
    context = channel._compose_context(msg.ctype, msg.content, isgroup=msg.is_group, msg=msg)
    return channel._decorate_reply(context, reply)


@pytest.mark.parametrize(
    "changes, group, reply, expected_type, expected",
    [
        ({}, GROUP, Reply(ReplyType.TEXT, "answer"), ReplyType.TEXT, "@Alice\nanswer"),
        ({"no_need_at": True}, GROUP, Reply(ReplyType.TEXT, "answer"), ReplyType.TEXT, "answer"),
        ({"group_chat_reply_prefix": "[g] ", "group_chat_reply_suffix": " ~"}, GROUP, Reply(ReplyType.TEXT, "answer"), ReplyType.TEXT, "[g] @Alice\nanswer ~"),
        ({"single_chat_reply_prefix": "[bot] ", "single_chat_reply_suffix": "!"}, None, Reply(ReplyType.TEXT, "answer"), ReplyType.TEXT, "[bot] answer!"),
        ({}, None, Reply(ReplyType.ERROR, "bad"), ReplyType.ERROR, "[ERROR]\nbad"),
        ({}, None, Reply(ReplyType.INFO, "fyi"), ReplyType.INFO, "[INFO]\nfyi"),
        ({}, None, Reply(ReplyType.IMAGE_URL, "http://x/a.png"), ReplyType.IMAGE_URL, "http://x/a.png"),
        # An unsupported type becomes an error that names it (the original named "ERROR").
        ({}, None, Reply(ReplyType.VOICE, "/tmp/a.mp3"), ReplyType.ERROR, "[ERROR]\n这个平台不能发送这种消息：VOICE"),
    ],
)
def test_decoration(channel, settings, changes, group, reply, expected_type, expected):
    for key, value in changes.items():
        settings[key] = value
    msg = make_msg("@bot q" if group else "bot q", group=group)
    out = decorate(channel, msg, reply)
    assert out.type == expected_type
    assert out.content == expected


def test_no_need_at_in_context_wins(channel):
    msg = make_msg("@bot q", group=GROUP)
    context = channel._compose_context(msg.ctype, msg.content, isgroup=True, msg=msg)
    context["no_need_at"] = True
    assert channel._decorate_reply(context, Reply(ReplyType.TEXT, "a")).content == "a"


# --- settings left out of config.json: the original's call-site defaults apply
def _without(settings, *keys):
    for key in keys:
        dict.pop(settings, key, None)


@pytest.fixture
def echo(settings):
    from bridge.bridge import Bridge

    settings["bot_type"] = "tests.fakes.bots:EchoBot"
    Bridge().reset_bot()
    yield
    Bridge().reset_bot()


@pytest.mark.parametrize("text", ["看看天气怎么样", "找一下资料", "画一只猫"])
def test_no_image_create_prefix_means_no_image_request(channel, settings, echo, text):
    # The original reads conf().get("image_create_prefix", [""]): without the key no text is an image request.
    _without(settings, "image_create_prefix")
    msg = make_msg("bot " + text)
    context = channel._compose_context(ContextType.TEXT, msg.content, isgroup=False, msg=msg)
    assert (context.type, context.content) == (ContextType.TEXT, text)
    channel.receive(make_msg("bot " + text))
    assert channel.wait_idle(10)
    assert channel.sent == [("alice", ReplyType.TEXT, f"echo: {text}")]


def test_no_group_chat_prefix_means_only_at_or_keyword_trigger(channel, settings):
    # The original reads conf().get("group_chat_prefix") (None when absent): no prefix triggers.
    _without(settings, "group_chat_prefix")
    compose = lambda msg: channel._compose_context(ContextType.TEXT, msg.content, isgroup=True, msg=msg)  # noqa: E731
    assert compose(make_msg("@bot what?", group=GROUP)) is None
    assert compose(make_msg("@Bot\u2005what?", group=GROUP, at=True)).content == "what?"
    assert compose(make_msg("I need help", group=GROUP)).content == "I need help"


@pytest.mark.parametrize("commands, accepted", [(None, None), (["加好友"], True)])
def test_friend_requests_are_accepted_only_for_configured_texts(channel, settings, echo, commands, accepted):
    # The original reads conf().get("accept_friend_commands", []); a refusal (content False) is not sent.
    _without(settings, "accept_friend_commands")
    if commands is not None:
        settings["accept_friend_commands"] = commands
    request = make_msg({"Content": "加好友"}, ctype=ContextType.ACCEPT_FRIEND)
    channel.receive(request)
    assert channel.wait_idle(10)
    expected = [] if accepted is None else [(None, ReplyType.ACCEPT_FRIEND, True)]
    assert channel.sent == expected
