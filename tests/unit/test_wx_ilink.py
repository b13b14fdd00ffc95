"""The iLink pieces of channel wx that need no server: the CDN's AES-128-ECB scheme and its key
spellings (checked against the simulator's own, separately written AES), message parsing and
text splitting."""
from __future__ import annotations

import base64

import pytest

from bridge.context import ContextType
from channel.wechat import ilink_media
from channel.wechat.wx_channel import split_text
from channel.wechat.wx_message import Malformed, WxMessage, message_id, parts_of, sender_of
from tests.fakes.ilink import crypto as sim_crypto


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_files_encrypted_either_side_decrypt_on_the_other(size):
    plain = bytes(range(256)) * 4
    plain = plain[:size]
    key = sim_crypto.new_key()
    ours = ilink_media.encrypt(plain, key)
    assert len(ours) == ilink_media.cipher_size(size) and len(ours) % 16 == 0 and len(ours) > size
    assert sim_crypto.decrypt(ours, key) == plain
    assert ilink_media.decrypt(sim_crypto.encrypt(plain, key), key) == plain


@pytest.mark.parametrize("style", ["hex", "b64raw", "b64hex"])
def test_every_key_spelling_gives_the_key(style):
    key = sim_crypto.new_key()
    assert ilink_media.parse_key(sim_crypto.spell_key(key, style)) == key


def test_the_key_we_send_is_read_by_the_platform_as_base64_of_its_hex():
    key = ilink_media.new_key()
    spelled = ilink_media.key_for_message(key)
    assert base64.b64decode(spelled) == key.hex().encode()
    assert sim_crypto.read_key(spelled) == key


@pytest.mark.parametrize("bad", ["", "zz" * 16, "not base64!", base64.b64encode(b"x" * 20).decode(),
                                 base64.b64encode(b"g" * 32).decode()])
def test_keys_that_are_no_key_are_refused(bad):
    with pytest.raises(ilink_media.MediaKeyError):
        ilink_media.parse_key(bad)


def test_a_file_under_another_key_or_cut_short_does_not_decrypt():
    key = sim_crypto.new_key()
    blob = sim_crypto.encrypt(b"hello world" * 10, key)
    with pytest.raises(ilink_media.DecryptError):
        ilink_media.decrypt(blob[:-3], key)
    with pytest.raises(ilink_media.DecryptError):
        ilink_media.decrypt(b"", key)
    # A wrong key yields garbage whose padding is wrong (all but ~1 in 256 keys): try a few.
    failures = 0
    for _ in range(8):
        try:
            ilink_media.decrypt(blob, sim_crypto.new_key())
        except ilink_media.DecryptError:
            failures += 1
    assert failures >= 6


def test_long_text_is_split_at_paragraphs_within_the_limit():
    text = "\n\n".join(f"paragraph {n} " + "x" * 900 for n in range(10))
    pieces = split_text(text, 4000)
    assert len(pieces) > 1 and all(len(p) <= 4000 for p in pieces)
    assert "\n\n".join(pieces) == text
    assert split_text("y" * 9000, 4000) == ["y" * 4000, "y" * 4000, "y" * 1000]
    assert split_text("short") == ["short"]


def _msg(items, **extra):
    return {"message_id": 7, "from_user_id": "u@im.wechat", "message_type": 1, "item_list": items,
            "context_token": "ctx", **extra}


def test_parts_of_each_item_kind():
    media = {"encrypt_query_param": "p", "aes_key": "k"}
    parts = parts_of(_msg([
        {"type": 1, "text_item": {"text": "hi"}, "ref_msg": {"message_item": {"type": 1, "text_item": {"text": "quoted"}}}},
        {"type": 2, "image_item": {"media": media, "aeskey": "00" * 16}},
        {"type": 3, "voice_item": {"media": media, "text": "transcript"}},
        {"type": 3, "voice_item": {"media": media}},
        {"type": 4, "file_item": {"media": media, "file_name": "a.pdf"}},
        {"type": 5, "video_item": {"media": media}},
        {"type": 99},
    ]))
    assert [p.ctype for p in parts] == [ContextType.TEXT, ContextType.IMAGE, ContextType.TEXT, ContextType.VOICE,
                                       ContextType.FILE, ContextType.VIDEO]
    assert parts[0].content.startswith("「quoted」") and parts[0].content.endswith("hi")
    assert parts[1].aeskey == "00" * 16 and parts[3].aeskey == "k"
    assert parts[2].content == "transcript" and parts[2].kind == "voice"
    assert parts[4].file_name == "a.pdf"
    first, second = (WxMessage(_msg([]), p, "bot", first=n == 0) for n, p in enumerate(parts[:2]))
    assert first.msg_id == "7" and second.msg_id == "7#1"
    assert first.other_user_id == "u@im.wechat" and not first.is_group and first.context_token == "ctx"


@pytest.mark.parametrize("msg", [None, "text", [], {"message_id": 1}, {"from_user_id": ""},
                                 {"from_user_id": 5}])
def test_updates_without_a_sender_are_malformed(msg):
    with pytest.raises(Malformed):
        sender_of(msg)


@pytest.mark.parametrize("items", [None, [], "x", [{"type": 1, "text_item": {"text": " "}}], [{"type": 2}],
                                   [{"type": 2, "image_item": {"media": {}}}], ["item"]])
def test_messages_with_nothing_readable_are_malformed(items):
    with pytest.raises(Malformed):
        parts_of(_msg(items))


def test_a_message_needs_an_id():
    with pytest.raises(Malformed):
        message_id({"from_user_id": "u"})
    assert message_id({"seq": 9}) == "9"


def test_weixin_is_the_same_channel_as_wx_and_keeps_its_state_name(settings):
    from channel.channel_factory import create_channel
    from channel.wechat.wx_channel import WxChannel

    for name in ("wx", "weixin"):
        channel = create_channel(name)
        try:
            assert isinstance(channel, WxChannel) and channel.channel_type == "wx"
        finally:
            channel.stop()


def test_gewechat_is_refused_by_the_factory_and_the_config_naming_what_works():
    from channel.channel_factory import ChannelError, create_channel
    from config import ConfigError, check_value

    for refuse, error in ((lambda: create_channel("gewechat"), ChannelError),
                          (lambda: check_value("channel_type", "gewechat"), ConfigError)):
        with pytest.raises(error) as caught:
            refuse()
        assert "shut down" in str(caught.value)
        assert all(f"`{name}`" in str(caught.value) for name in ("wx", "wxy", "wework"))


def test_a_login_never_shows_its_token_and_a_logged_update_hides_keys_and_addresses():
    from channel.wechat.ilink_login import Credentials
    from channel.wechat.wx_channel import shown

    creds = Credentials("tok-secret", "https://api", "b@im.bot", "u@im.wechat")
    assert "tok-secret" not in repr(creds) and "b@im.bot" in repr(creds)
    update = {"from_user_id": "u", "context_token": "ctx-secret", "item_list": [{"type": 2, "image_item": {
        "aeskey": "00" * 16, "media": {"encrypt_query_param": "param-secret", "aes_key": "key-secret",
                                       "full_url": "https://cdn/secret"}}}]}
    line = shown(update)
    assert not [s for s in ("ctx-secret", "00" * 16, "param-secret", "key-secret", "cdn/secret") if s in line]
    assert "'from_user_id': 'u'" in line


def test_retry_delay_has_a_floor_and_group_only_settings_are_named(settings):
    from channel.wechat.wx_channel import GROUP_ONLY_SETTINGS, RETRY_MIN, WxChannel

    settings["wx_ilink_retry_delay"] = 0
    channel = WxChannel()
    try:
        assert channel.retry_delay == RETRY_MIN == 0.5
    finally:
        channel.stop()
    assert {"group_chat_suffix", "group_userid_black_list"} <= set(GROUP_ONLY_SETTINGS)


def test_the_instance_lock_tells_another_holder_from_an_unusable_folder(tmp_path):
    from channel.wechat.instance_lock import AlreadyRunning, InstanceLock, LockUnavailable

    first = InstanceLock(str(tmp_path / "wx.lock"))
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning):  # a second open file: flock/locking conflict as between processes
            InstanceLock(str(tmp_path / "wx.lock")).acquire()
    finally:
        first.release()
    again = InstanceLock(str(tmp_path / "wx.lock"))
    again.acquire()  # released explicitly: free again
    again.release()
    with pytest.raises(LockUnavailable) as caught:
        InstanceLock(str(tmp_path / "missing" / "wx.lock")).acquire()
    assert "appdata_dir" in str(caught.value)


def test_a_media_part_names_its_file_up_front_and_survives_a_record_round_trip():
    msg = {"from_user_id": "u", "message_id": 5, "message_type": 1, "context_token": "c", "item_list": [
        {"type": 1, "text_item": {"text": "see"}},
        {"type": 4, "file_item": {"media": {"encrypt_query_param": "p", "aes_key": "k"}, "file_name": "a/b.pdf"}}]}
    fetched = []
    text_part, file_part = parts_of(msg)
    cmsg = WxMessage(msg, file_part, "b@im.bot", first=False, fetch=fetched.append)
    assert cmsg.content.endswith("-b.pdf") and cmsg.msg_id == "5#1"  # a path for plugins at once
    again = WxMessage.from_record(cmsg.to_record(), fetched.append)
    assert (again.content, again.msg_id, again.part.media, again.bot_id) == (
        cmsg.content, cmsg.msg_id, file_part.media, "b@im.bot")
    again.prepare()
    assert fetched == [again]  # fetched only when asked
